"""Everyday apps on the input layer: summarize, classify, extract, email, research.

Each is a function a user can read and copy, a ``lamina`` command and an HTTP route under
``/v1/apps/``:

- :func:`~lamina.apps.summarize.summarize`: map-reduce summaries of any size, each point
  linked to the section it came from
- :func:`~lamina.apps.classify.classify` / :class:`~lamina.apps.classify.Classifier`:
  zero-shot, few-shot or nearest-example labels with a confidence; :func:`report` scores them
- :func:`~lamina.apps.extract.extract`: fields and entities as JSON that validates
- :func:`~lamina.apps.emails.reply` / :func:`~lamina.apps.emails.draft`: emails, with facts
  from an index and their citations
- :func:`~lamina.apps.research.research`: a report with sections and verified citations
"""

from lamina.apps.classify import Classification, Classifier, classify, report
from lamina.apps.emails import EmailDraft, draft, reply
from lamina.apps.extract import Extraction, extract
from lamina.apps.research import Report, research
from lamina.apps.summarize import Summary, summarize

__all__ = [
    "Classification",
    "Classifier",
    "EmailDraft",
    "Extraction",
    "Report",
    "Summary",
    "classify",
    "draft",
    "extract",
    "reply",
    "report",
    "research",
    "summarize",
]
