"""``lamina doctor``: check the installation; exit 0 when the offline main job can run."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from lamina.cli.app import app, edge, err, out


@app.command()
@edge
def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Versions, CPU features, the llama.cpp build, a one-token decode of the bundled model
    (in a child process, so a crash is reported, not suffered), the bundled embedder,
    LAMINA_HOME, the settings in force (secrets masked) and any network egress configured."""
    from lamina.doctor import diagnose

    report = diagnose()
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2))
        raise typer.Exit(0 if report.ok else 1)
    llama = report.llama_cpp
    model = report.local_model
    embedder = report.embedder
    home = report.home
    versions = ", ".join(f"{k} {v}" for k, v in report.versions.items() if v)
    out.print(f"versions    {versions}")
    out.print(f"cpu         {report.cpu['model']} ({' '.join(report.cpu['features'])})")
    out.print(f"llama.cpp   built with: {llama.get('build_flags') or 'unknown flags'}")
    out.print(f"            {llama.get('system_info') or 'does not load'}")
    amx = llama.get("amx_instructions")
    out.print(f"            AMX instructions: {'none' if amx == [] else amx}")
    decode = "ok" if model.get("ok") else (model.get("signal") or model.get("error"))
    out.print(f"local model {model.get('path')}: one-token decode {decode}")
    if embedder.get("ok"):
        out.print(f"embedder    {embedder['name']}: ok ({embedder['dimension']} dimensions)")
    else:
        out.print(f"embedder    {embedder.get('name')}: {embedder.get('error')}")
    writable = "" if home.get("writable") else ", NOT writable"
    out.print(f"home        {home['path']} ({home['bytes'] / 1e6:.1f} MB{writable})")
    egress = "; ".join(report.egress) or "none (everything runs offline)"
    out.print(f"egress      {egress}")
    for warning in report.warnings:
        err.print(f"[yellow]warning:[/] {warning.problem}. Fix: {warning.fix}", highlight=False)
    for problem in report.problems:
        err.print(f"[bold red]problem:[/] {problem.problem}. Fix: {problem.fix}", highlight=False)
    if report.ok:
        out.print("ok: the offline main job can run here")
    raise typer.Exit(0 if report.ok else 1)
