"""``lamina tune sft|dpo|dataset`` and ``lamina feedback``: adapting the model to your data."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from lamina.cli.app import ModelOpt, app, edge, err, out

tune_app = typer.Typer(
    help="Fine-tune a model (LoRA SFT, DPO) and export it as a GGUF Lamina serves.",
    no_args_is_help=True,
)
app.add_typer(tune_app, name="tune")

DataOpt = Annotated[Path, typer.Option("--data", help="JSONL file or saved datasets folder.")]
OutOpt = Annotated[
    Path, typer.Option("--out", help="Run folder: checkpoints, adapter, model.gguf.")
]
BaseOpt = Annotated[
    str, typer.Option(help="local (bundled), local:PATH.gguf, PATH.gguf, or an earlier run folder.")
]
EvalOpt = Annotated[
    Path | None, typer.Option("--eval", help="Eval set; default: hold out 10% of --data.")
]
EpochsOpt = Annotated[int, typer.Option(min=1, help="Passes over the data.")]
LrOpt = Annotated[float, typer.Option(help="Peak learning rate.")]
RankOpt = Annotated[int, typer.Option("--lora-r", min=1, help="LoRA rank.")]
StepsOpt = Annotated[int | None, typer.Option(min=1, help="Stop after this many steps.")]
SeedOpt = Annotated[int, typer.Option(help="Same seed, same data, same options: same weights.")]
BatchOpt = Annotated[int, typer.Option(min=1, help="Examples per step.")]
LengthOpt = Annotated[int, typer.Option(min=16, help="Longest example in tokens.")]
QuantOpt = Annotated[str, typer.Option(help="model.gguf type: q4_1, q4_k_m, q8_0 or f16.")]
ExportOpt = Annotated[bool, typer.Option(help="Write model.gguf (else only the adapter).")]
GateOpt = Annotated[
    bool, typer.Option(help="Export only if the tuned model beats the base on the eval split.")
]
ResumeOpt = Annotated[bool, typer.Option(help="Continue the run in --out from its checkpoint.")]
QloraOpt = Annotated[bool, typer.Option(help="4-bit base (bitsandbytes); needs a CUDA GPU.")]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu or cuda.")]
CheckpointingOpt = Annotated[
    bool,
    typer.Option(
        "--gradient-checkpointing",
        help="Recompute activations in the backward pass: far less memory, ~1/3 more time.",
    ),
]
ThreadsOpt = Annotated[
    int | None, typer.Option(min=1, help="CPU threads (default: the cores left idle by the load).")
]
SaveOpt = Annotated[int | None, typer.Option(min=1, help="Checkpoint every N steps.")]
GenerateOpt = Annotated[
    int, typer.Option(min=0, help="Eval items answered in full for exact match/containment.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the report as JSON.")]


def _quiet_libraries() -> None:
    """transformers' and peft's progress bars and deprecation notes are not for our users."""
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="peft")


class _Bars:
    """One bar per phase; the training bar shows loss, tokens/s and the time left."""

    def __init__(self) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description:<10}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=err,
        )
        self.tasks: dict[str, TaskID] = {}

    def __call__(self, event: Any) -> None:
        task = self.tasks.get(event.phase)
        if task is None:
            task = self.progress.add_task(event.phase, total=event.total, stats="")
            self.tasks[event.phase] = task
        stats = ""
        if event.loss is not None:
            stats = f"loss {event.loss:.3f}  {event.tokens_per_s or 0:.0f} tok/s"
        self.progress.update(task, completed=event.done, total=event.total, stats=stats)


def _print_report(report: dict[str, Any], out_dir: Path) -> None:
    served = report.get("served") or {}
    table = Table(title=f"{report['method'].upper()} on {report['base_model']}: eval split")
    table.add_column("metric")
    table.add_column("base", justify="right")
    table.add_column("tuned", justify="right")
    if served:
        table.add_column(f"model.gguf ({served['quant']})", justify="right")
    for key, base in report["base"].items():
        if key == "tokens":
            continue
        share = key in ("exact_match", "containment", "preference_accuracy")
        cells = [report["tuned"].get(key)] + ([served.get(key)] if served else [])
        shown = ["" if v is None else f"{v:.1%}" if share else f"{v:.4f}" for v in (base, *cells)]
        table.add_row(key.replace("_", " "), *shown)
    out.print(table)
    for sample in report["samples"][:5]:
        out.print(f"\n[bold]Q:[/] {sample['prompt']}", highlight=False)
        out.print(f"  base: {sample['base']}", highlight=False)
        if "served" in sample:
            out.print(f"  tuned, model.gguf: {sample['served']}", highlight=False)
        else:
            out.print(f"  tuned: {sample['tuned']}", highlight=False)
    train = report["train"]
    out.print(
        f"\ntrained {train['steps']} steps on {train['examples']} examples in "
        f"{train['seconds']:.0f} s ({train['tokens_per_s']:.0f} tokens/s, {train['device']})",
        highlight=False,
    )
    gate = report["gate"]
    if not gate["passed"]:
        out.print(f"[yellow]worse than the base:[/] {'; '.join(gate['reasons'])}")
    if report["export"]:
        path = report["export"]["path"]
        size = report["export"]["bytes"] / 1e6
        out.print(f"model: {path} ({report['export']['quant']}, {size:.0f} MB)", highlight=False)
        out.print(f'try:   lamina generate -m local:{path} "..." --temperature 0', highlight=False)
    out.print(f"report: {out_dir / 'report.json'}", highlight=False)


def _run(options: dict[str, Any], resume: bool, as_json: bool) -> None:
    from pydantic import ValidationError

    from lamina.errors import InvalidRequestError
    from lamina.tuning.config import TuneConfig

    try:
        config = TuneConfig(**options)  # validated before the heavy imports
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InvalidRequestError(
            f"--{'-'.join(str(p) for p in first['loc']).replace('_', '-')}: {first['msg']}"
        ) from None
    from lamina.tuning.run import tune

    _quiet_libraries()
    bars = _Bars()
    with bars.progress:
        report = tune(config, resume=resume, progress=bars)
    if as_json:
        typer.echo(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        _print_report(report, config.out)


def _check_quant(quant: str) -> str:
    if quant not in ("q4_1", "q4_k_m", "q8_0", "f16"):
        raise typer.BadParameter(f"{quant!r} is not one of q4_1, q4_k_m, q8_0, f16")
    return quant


@tune_app.command("sft")
@edge
def sft(
    data: DataOpt,
    out_dir: OutOpt,
    base: BaseOpt = "local",
    eval_data: EvalOpt = None,
    epochs: EpochsOpt = 3,
    lr: LrOpt = 2e-4,
    lora_r: RankOpt = 16,
    max_steps: StepsOpt = None,
    seed: SeedOpt = 0,
    batch_size: BatchOpt = 8,
    max_length: LengthOpt = 1024,
    quant: QuantOpt = "q8_0",
    export: ExportOpt = True,
    gate: GateOpt = False,
    resume: ResumeOpt = False,
    qlora: QloraOpt = False,
    device: DeviceOpt = "auto",
    gradient_checkpointing: CheckpointingOpt = False,
    threads: ThreadsOpt = None,
    save_every: SaveOpt = None,
    eval_generate: GenerateOpt = 32,
    as_json: JsonOpt = False,
) -> None:
    """LoRA supervised fine-tuning on chat or prompt/completion data; writes DIR/model.gguf."""
    options = {k: v for k, v in locals().items() if k not in ("resume", "as_json", "out_dir")}
    options.update(method="sft", out=out_dir, quant=_check_quant(quant))
    _run(options, resume, as_json)


@tune_app.command("dpo")
@edge
def dpo(
    data: DataOpt,
    out_dir: OutOpt,
    base: BaseOpt = "local",
    eval_data: EvalOpt = None,
    epochs: EpochsOpt = 1,
    lr: LrOpt = 5e-5,
    lora_r: RankOpt = 16,
    beta: Annotated[float, typer.Option(help="Pull towards the reference model.")] = 0.1,
    max_steps: StepsOpt = None,
    seed: SeedOpt = 0,
    batch_size: BatchOpt = 4,
    max_length: LengthOpt = 1024,
    quant: QuantOpt = "q8_0",
    export: ExportOpt = True,
    gate: GateOpt = False,
    resume: ResumeOpt = False,
    qlora: QloraOpt = False,
    device: DeviceOpt = "auto",
    gradient_checkpointing: CheckpointingOpt = False,
    threads: ThreadsOpt = None,
    save_every: SaveOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """DPO from preference pairs, starting from the base or an SFT run (--base DIR)."""
    options = {k: v for k, v in locals().items() if k not in ("resume", "as_json", "out_dir")}
    options.update(method="dpo", out=out_dir, quant=_check_quant(quant))
    _run(options, resume, as_json)


@tune_app.command("dataset")
@edge
def dataset(
    output: Annotated[Path, typer.Option("--out", help="SFT examples (JSON lines).")],
    from_feedback: Annotated[
        bool, typer.Option("--from-feedback", help="Build from rated runs (lamina feedback).")
    ] = False,
    pairs: Annotated[
        Path | None, typer.Option(help="Also write DPO pairs (fix preferred to answer) here.")
    ] = None,
    kind: Annotated[
        list[str] | None, typer.Option(help="Only runs of this kind (ask, ...); repeatable.")
    ] = None,
    from_index: Annotated[
        Path | None,
        typer.Option("--from-index", help="Build grounded answers from this index instead."),
    ] = None,
    questions: Annotated[
        Path | None,
        typer.Option(help="With --from-index: questions, one per line or JSONL with 'question'."),
    ] = None,
    model: ModelOpt = None,
) -> None:
    """Build training data: from ratings (accepted/fixed answers, preference pairs), or
    grounded answers from an index (the generate prompt -> the verified quote)."""
    from lamina.tuning.data import write_jsonl

    if from_feedback == (from_index is not None):
        raise typer.BadParameter("say where the data comes from: --from-feedback or --from-index")
    if from_index is not None:
        _grounded_dataset(from_index, questions, model, output)
        return
    from lamina.feedback import FeedbackStore
    from lamina.tuning.data import from_feedback as convert

    store = FeedbackStore()
    data = convert(store.rated(kind))
    written = write_jsonl(output, (ex.record() for ex in data.examples))
    err.print(f"{_count(written, 'SFT example')} -> {output}", highlight=False)
    if pairs is not None:
        count = write_jsonl(pairs, (p.record() for p in data.pairs))
        err.print(f"{_count(count, 'DPO pair')} -> {pairs}", highlight=False)
    elif data.pairs:
        err.print(f"({_count(len(data.pairs), 'DPO pair')} not written: add --pairs FILE)")
    if data.skipped:
        err.print(
            f"({_count(data.skipped, 'run')} rated down without --fix: nothing to learn from)"
        )


def _count(n: int, noun: str) -> str:
    """
    >>> _count(1, "DPO pair"), _count(2, "run")
    ('1 DPO pair', '2 runs')
    """
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _read_questions(path: Path) -> list[str]:
    from lamina.errors import InvalidRequestError

    found = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        if line.lstrip().startswith("{"):
            try:
                question = json.loads(line)["question"]
            except (ValueError, KeyError, TypeError):
                raise InvalidRequestError(
                    f"{path}:{number}: a JSON line needs a 'question' string."
                ) from None
            found.append(str(question))
        else:
            found.append(line.strip())
    if not found:
        raise InvalidRequestError(f"{path} holds no questions.")
    return found


def _grounded_dataset(index: Path, questions: Path | None, model: str | None, output: Path) -> None:
    from lamina.errors import InvalidRequestError
    from lamina.models import get_model
    from lamina.retrieval.index import Index
    from lamina.tuning.data import write_jsonl
    from lamina.tuning.grounded import grounded_examples

    if questions is None:
        raise InvalidRequestError("--from-index needs --questions FILE (one question per line).")
    if not (index / "lamina.sqlite").exists():
        raise InvalidRequestError(f"No index at {str(index)!r}. Build one with: lamina ingest")
    asked = _read_questions(questions)
    with Index(index) as opened:
        made = grounded_examples(opened, asked, get_model(model))
    written = write_jsonl(output, (ex.record() for ex in made.examples))
    err.print(f"{_count(written, 'grounded example')} -> {output}", highlight=False)
    if made.skipped:
        err.print(f"({len(made.skipped)} questions not found in the index: skipped)")


@app.command()
@edge
def feedback(
    run_id: Annotated[str, typer.Argument(help="The run id `lamina ask` printed.")],
    rating: Annotated[str, typer.Argument(help="up or down.")],
    fix: Annotated[
        str | None, typer.Option(help="With down: the answer that should have been given.")
    ] = None,
) -> None:
    """Rate an answer; ratings become training data (lamina tune dataset --from-feedback)."""
    from lamina.feedback import FeedbackStore

    made = FeedbackStore().rate(run_id, rating, fix)
    note = " with a fix" if made.fix else ""
    err.print(f"rated {made.run_id} {made.rating}{note}", highlight=False)
