from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest

from lamina.errors import InvalidRequestError
from lamina.evals.gen import evaluate_texts
from lamina.evals.report import comparison_html, report_html
from lamina.evals.run import EvalRun, load_run, parse_drops, regressions
from tests.evals.conftest import lamina

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "eval"
HOSTILE = "<script>alert('x')</script><img src=x onerror=alert(1)>"


def _run() -> EvalRun:
    return evaluate_texts(
        {"good": "the cat sat on the mat", "bad": HOSTILE, "mid": "a cat on a mat"},
        {"good": ["the cat sat on the mat"], "bad": ["a dog"], "mid": ["the cat sat on the mat"]},
    )


def test_hostile_text_is_escaped_and_nothing_is_fetched() -> None:
    page = report_html(_run())
    assert "<script" not in page.lower() and "<img src=x" not in page
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # no CDN, no network
    assert 'http-equiv="Content-Security-Policy"' in page


def test_report_embeds_plots_and_puts_the_worst_items_first() -> None:
    page = report_html(_run())
    images = re.findall(r'src="data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)"', page)
    assert images, "at least one embedded plot"
    assert base64.b64decode(images[0]).lstrip().startswith(b"<?xml")
    rows = re.findall(r"<tr><td><div class=\"cell\">(\w+)</div>", page)
    assert rows[:3] == ["bad", "mid", "good"]  # by chrF, lowest first


def test_lower_is_better_runs_put_the_highest_first() -> None:
    run = EvalRun(
        kind="ppl",
        summary={"perplexity": 3.0},
        items=[{"window": 0, "perplexity": 2.0}, {"window": 1, "perplexity": 9.0}],
        primary="perplexity",
    )
    assert [i["window"] for i in run.worst_first()] == [1, 0]


def test_comparison_shows_both_runs_and_escapes(tmp_path: Path) -> None:
    a = _run()
    b = evaluate_texts(
        {"good": "the cat sat on the mat", "bad": "a dog", "mid": HOSTILE},
        {"good": ["the cat sat on the mat"], "bad": ["a dog"], "mid": ["the cat sat on the mat"]},
    )
    page = comparison_html(a, b, ("<b>A</b>", "B.json"))
    assert "&lt;b&gt;A&lt;/b&gt;" in page and "<script" not in page
    assert page.count("data:image/svg+xml;base64,") >= 2  # change bars + overlaid histogram
    pairs = re.findall(r"<tr><td><div class=\"cell\">(\w+)</div></td>", page)
    assert pairs[0] == "mid"  # the item that got worse comes first


def test_gate_names_metric_baseline_current_and_allowance() -> None:
    base = EvalRun(kind="gen", summary={"bleu": 30.0, "rougeL": 0.5, "perplexity": 10.0})
    now = EvalRun(kind="gen", summary={"bleu": 28.0, "rougeL": 0.49, "perplexity": 11.5})
    found = regressions(now, base, parse_drops(["bleu=1.5", "rougeL=5%", "perplexity=1"]))
    assert [r.metric for r in found] == ["bleu", "perplexity"]
    assert found[0].message() == "bleu dropped from 30 to 28 (a drop of 2; allowed 1.5)"
    assert found[1].message() == "perplexity rose from 10 to 11.5 (a rise of 1.5; allowed 1)"
    assert regressions(now, base, {"rougeL": "5%"}) == []  # 0.01 drop, 0.025 allowed


def test_gate_refuses_unknown_metrics_and_bad_specs() -> None:
    run = EvalRun(kind="gen", summary={"bleu": 1.0, "hybrid": {"ndcg@10": 0.5}})
    with pytest.raises(InvalidRequestError, match=r"'blue'.*Metrics it has: bleu, hybrid.ndcg@10"):
        regressions(run, run, {"blue": "1"})
    assert regressions(run, run, {"hybrid.ndcg@10": "0"}) == []
    for spec in ("bleu", "bleu=", "=1", "bleu=x", "bleu=-1"):
        with pytest.raises(InvalidRequestError, match="is not METRIC=AMOUNT"):
            parse_drops([spec])


def test_a_saved_run_loads_back(tmp_path: Path) -> None:
    run = _run()
    path = tmp_path / "run.json"
    path.write_text(run.dumps())
    loaded = load_run(path)
    assert loaded.metrics() == run.metrics() and loaded.items == run.items
    assert loaded.primary == "chrf" and loaded.kind == "gen"
    (tmp_path / "bad.json").write_text("[1, 2")
    with pytest.raises(InvalidRequestError, match="is not the JSON of an eval run"):
        load_run(tmp_path / "bad.json")


def test_cli_gate_exits_3_and_compare_writes_a_report(tmp_path: Path) -> None:
    pred, ref = str(SAMPLES / "pred.jsonl"), str(SAMPLES / "ref.jsonl")
    first = lamina("eval", "gen", "--pred", pred, "--ref", ref, "--json")
    assert first.returncode == 0, first.stderr
    baseline = tmp_path / "baseline.json"
    baseline.write_text(first.stdout)
    data = json.loads(first.stdout)
    data["bleu"] += 5.0  # a baseline 5 BLEU better than what the samples score
    better = tmp_path / "better.json"
    better.write_text(json.dumps(data))

    gen = ("eval", "gen", "--pred", pred, "--ref", ref)
    ok = lamina(*gen, "--baseline", str(baseline), "--max-drop", "bleu=0")
    assert ok.returncode == 0, ok.stderr
    assert "gate passed" in ok.stderr

    failed = lamina(*gen, "--baseline", str(better), "--max-drop", "bleu=1", "--max-drop", "f1=0")
    assert failed.returncode == 3
    bleu = data["bleu"]
    assert f"regression: bleu dropped from {bleu:.6g} to {bleu - 5:.6g}" in failed.stderr
    assert "allowed 1)" in failed.stderr and "f1" not in failed.stderr.split("regression")[-1]

    report = tmp_path / "compare.html"
    compared = lamina("eval", "compare", str(baseline), str(better), "--report", str(report))
    assert compared.returncode == 0, compared.stderr
    assert "bleu" in compared.stdout and "+5" in compared.stdout
    assert "data:image/svg+xml;base64," in report.read_text()
