"""The ``lamina`` command: the terminal edge of the stack.

``app`` holds the Typer application and what every command shares (the error edge, common
options, progress bars, the chat loop); each other module registers one group of commands:

- ``models``: generate, chat, tokens, models, cache
- ``retrieval``: ingest, search, bench
- ``rag``: ask, grounded chat
- ``eval``: eval gen, ppl, rag, retrieval, compare
- ``server``: serve, keys, traces (and traces show)
- ``agents``: agent, crew, tools list / run
- ``tune``: tune sft, dpo, dataset; feedback
- ``doctor``: the installation check
- ``apps``: summarize, classify, extract, email reply / draft, research
- ``prompts``: prompts list / show / render

Errors become messages and exit codes here, nowhere deeper.
"""

from lamina.cli import agents, apps, doctor, eval, models, prompts, rag, retrieval, server, tune
from lamina.cli.app import app, main

__all__ = [
    "agents",
    "app",
    "apps",
    "doctor",
    "eval",
    "main",
    "models",
    "prompts",
    "rag",
    "retrieval",
    "server",
    "tune",
]
