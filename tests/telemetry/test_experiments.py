"""Weights & Biases logging of eval (and tuning) runs: off by default, offline when on, and the
run files really hold the metrics (read back from wandb's own transaction log)."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lamina.errors import ConfigError
from lamina.evals.run import EvalRun, RunMeta
from lamina.settings import Settings
from lamina.telemetry.experiments import experiment, log_eval

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "eval"


def _records(path: Path) -> Iterator[bytes]:
    """The records of a ``.wandb`` file: a LevelDB-style log (7-byte header, then records of
    crc32 + length + type in 32 KiB blocks). wandb no longer ships a Python reader."""
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, pending = 7, 32768, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:
            pos += block - pos % block  # the block's tail is padding
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if length == 0 and kind == 0:
            break
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind == 1:  # a whole record
            yield chunk
        elif kind == 2:  # first piece
            pending = chunk
        elif kind == 3:  # middle
            pending += chunk
        elif kind == 4:  # last
            yield pending + chunk


def logged(
    run_dir: Path, rows: int, keys: tuple[str, ...]
) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
    """(history rows, summary, config) of an offline run folder, once it holds ``rows``
    history rows and the summary ``keys``: wandb's writer process may still be appending when
    ``finish()`` returns."""
    deadline = time.monotonic() + 20
    while True:
        found = _read(run_dir)
        done = len(found[0]) >= rows and all(k in found[1] for k in keys)
        if done or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def _read(run_dir: Path) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
    from wandb.proto import wandb_internal_pb2 as pb

    [path] = run_dir.glob("run-*.wandb")
    history: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    config: dict[str, Any] = {}
    for raw in _records(path):
        record = pb.Record()
        record.ParseFromString(raw)
        kind = record.WhichOneof("record_type")
        if kind == "history":
            row = {"/".join(i.nested_key) or i.key: json.loads(i.value_json)
                   for i in record.history.item}  # fmt: skip
            history.append({k: v for k, v in row.items() if not k.startswith("_")})
        elif kind == "summary":
            for item in record.summary.update:
                summary["/".join(item.nested_key) or item.key] = json.loads(item.value_json)
        elif kind == "run":
            for item in record.run.config.update:
                config[item.key] = json.loads(item.value_json)
    return history, summary, config


def test_off_by_default_and_nothing_is_written(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    with experiment("eval", config={"k": 1}, settings=settings) as run:
        run.log({"f1": 1.0})
        run.summarize({"f1": 1.0})
    assert run.directory is None and not (tmp_path / "wandb").exists()


def test_an_unknown_mode_is_refused_with_the_choices(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_MODE", "cloud")
    settings = Settings(home=tmp_path, telemetry={"wandb": True})
    opened = experiment("eval", settings=settings)
    with pytest.raises(ConfigError, match=r"WANDB_MODE='cloud'.*'offline'"):
        opened.__enter__()


@pytest.mark.integration
def test_an_eval_run_is_logged_offline_with_its_metrics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_ERROR_REPORTING", raising=False)
    settings = Settings(home=tmp_path / "home", telemetry={"wandb": True})
    run = EvalRun(
        kind="gen",
        summary={"bleu": 31.5, "f1": 0.75, "n": 2, "by_length": {"short": 0.5}},
        items=[{"id": "a", "f1": 0.5, "text": "x"}, {"id": "b", "f1": 1.0, "text": "y"}],
        meta=RunMeta(inputs={"pred": "p.jsonl"}, trace_id="ab" * 16),
    )
    folder = log_eval(run, settings=settings)
    assert "WANDB_ERROR_REPORTING" not in os.environ  # set for the run only, then restored
    assert folder is not None and folder.parent == tmp_path / "home" / "wandb" / "wandb"
    assert folder.name.startswith("offline-run-")  # offline: nothing was sent
    history, summary, config = logged(folder, 2, ("bleu", "f1", "n", "by_length/short"))
    assert history == [{"item/f1": 0.5}, {"item/f1": 1.0}]
    assert {k: summary[k] for k in ("bleu", "f1", "n", "by_length/short")} == {
        "bleu": 31.5, "f1": 0.75, "n": 2.0, "by_length/short": 0.5,
    }  # fmt: skip
    assert (config["pred"], config["trace_id"]) == ("p.jsonl", "ab" * 16)


@pytest.mark.integration
def test_lamina_eval_gen_logs_to_an_offline_run_under_lamina_home(tmp_path: Path) -> None:
    pytest.importorskip("wandb")
    home = tmp_path / "home"
    env = {**os.environ, "LAMINA_HOME": str(home), "LAMINA_TELEMETRY__WANDB": "true"}
    env.pop("WANDB_MODE", None)
    pred, ref = SAMPLES / "pred.jsonl", SAMPLES / "ref.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "lamina", "eval", "gen", "--pred", str(pred), "--ref", str(ref),
         "--json"],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    [folder] = (home / "wandb" / "wandb").glob("offline-run-*")
    metrics = ("bleu", "chrf", "rouge1", "rougeL", "exact_match", "f1")
    history, summary, _ = logged(folder, 8, metrics)
    for metric in metrics:
        assert summary[metric] == pytest.approx(printed[metric]), metric
    assert len(history) == len(printed["items"]) == 8


def _isolated(argv: list[str]) -> list[str]:
    """``argv`` under strace (every process, each connect/sendto/sendmsg logged) in a network
    namespace with loopback only; skips the test when this machine allows neither."""
    if not shutil.which("strace") or not shutil.which("unshare") or not shutil.which("ip"):
        pytest.skip("needs strace, unshare and ip (util-linux, iproute2) to watch the network")
    unshare = ["unshare", "--net"] if os.geteuid() == 0 else ["unshare", "-r", "--net"]
    probe = [*unshare, "strace", "-f", "-qq", "-o", os.devnull, "true"]
    if subprocess.run(probe, capture_output=True).returncode != 0:
        pytest.skip("this machine allows no network namespace or no ptrace (strace)")
    return [*unshare, "sh", "-c", 'ip link set lo up && exec "$@"', "sh", "strace", "-f",
            "-qq", "-e", "trace=connect,sendto,sendmsg", "-e", "signal=none", *argv]  # fmt: skip


@pytest.mark.integration
def test_an_offline_eval_run_makes_no_network_connection_from_any_process(
    tmp_path: Path,
) -> None:
    pytest.importorskip("wandb")
    home, log = tmp_path / "home", tmp_path / "syscalls.txt"
    env = {**os.environ, "LAMINA_HOME": str(home), "LAMINA_TELEMETRY__WANDB": "true"}
    for name in ("WANDB_MODE", "WANDB_ERROR_REPORTING"):
        env.pop(name, None)
    pred, ref = SAMPLES / "pred.jsonl", SAMPLES / "ref.jsonl"
    argv = [sys.executable, "-m", "lamina", "eval", "gen", "--pred", str(pred), "--ref", str(ref),
            "--json"]  # fmt: skip
    command = _isolated(argv)
    command.insert(command.index("-f") + 1, f"-o{log}")
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["n"] == 8
    [folder] = (home / "wandb" / "wandb").glob("offline-run-*")
    assert list(folder.glob("run-*.wandb"))
    calls = log.read_text().splitlines()
    # wandb-core (a child process, followed by strace -f) did talk to this process ...
    assert any("connect(" in c and "AF_UNIX" in c for c in calls)
    # ... and nothing tried any address but loopback (a DNS lookup would be a connect to :53)
    outside = [c for c in calls if "AF_INET" in c and not any(
        lo in c for lo in ('inet_addr("127.', 'inet_pton(AF_INET6, "::1"'))]  # fmt: skip
    assert outside == [], outside[:5]


def test_lamina_eval_with_wandb_on_and_not_installed_fails_before_the_eval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    import lamina.evals.gen as gen
    from lamina.cli import app

    calls: list[Any] = []
    real = gen.evaluate_files

    def evaluate_files(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(gen, "evaluate_files", evaluate_files)
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` raises ImportError
    report = tmp_path / "report.html"
    args = ["eval", "gen", "--pred", str(SAMPLES / "pred.jsonl"), "--ref",
            str(SAMPLES / "ref.jsonl"), "--report", str(report)]  # fmt: skip
    result = CliRunner().invoke(app, args, env={"LAMINA_TELEMETRY__WANDB": "true"})
    assert result.exit_code == 1, result.output
    assert "pip install 'lamina[wandb]'" in result.output
    assert calls == [] and not report.exists()  # nothing was computed only to be lost
    monkeypatch.delitem(sys.modules, "wandb")
    # with W&B off the same command runs: the check is only for what is asked
    result = CliRunner().invoke(app, args, env={"LAMINA_TELEMETRY__WANDB": "false"})
    assert result.exit_code == 0, result.output
    assert len(calls) == 1 and report.exists()
