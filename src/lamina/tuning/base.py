"""The model a run starts from: a GGUF file, plus the adapters of earlier runs merged in.

Weights come from the GGUF itself, never from a hub: transformers reads the file and
dequantises it to float32. That takes about 25 s for the bundled 135M model, so the result is
kept as a plain safetensors checkpoint under ``$LAMINA_HOME/models/tuning`` and later runs load
it in about a second. A run folder as ``--base`` (DPO after SFT) means its own base with its
adapter merged in, recorded in the folder's ``tuning.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lamina.errors import MissingDependencyError, ModelNotFoundError
from lamina.tuning.errors import TuningError

__all__ = [
    "MANIFEST",
    "BaseRef",
    "check_device",
    "hf_checkpoint",
    "load_base",
    "load_tokenizer",
    "resolve_base",
    "resolve_device",
]

MANIFEST = "tuning.json"
ADAPTER = "adapter"


def require(module: str, package: str | None = None, extra: str = "tune") -> Any:
    """Import an optional module of the ``tune`` extra, or say how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependencyError(package or module, extra) from None


@dataclass(frozen=True)
class BaseRef:
    """A GGUF file and the adapters (peft folders) merged into it, oldest first."""

    gguf: Path
    adapters: tuple[Path, ...] = ()

    def describe(self) -> str:
        chain = "".join(f" + {a.parent.name}/{a.name}" for a in self.adapters)
        return f"{self.gguf.name}{chain}"

    def as_json(self) -> dict[str, Any]:
        return {"gguf": str(self.gguf), "adapters": [str(a) for a in self.adapters]}


def resolve_base(spec: str | None) -> BaseRef:
    """``local`` (the bundled model), ``local:PATH.gguf``, ``PATH.gguf`` or a run folder."""
    from lamina.models.local import bundled_model_path

    if spec in (None, "", "local"):
        return BaseRef(bundled_model_path())
    text = spec[len("local:") :] if spec.startswith("local:") else spec
    path = Path(text).expanduser().absolute()
    if path.is_dir():
        manifest = path / MANIFEST
        if not manifest.is_file() or not (path / ADAPTER).is_dir():
            raise TuningError(
                f"{str(path)!r} is not a finished tuning run (no {MANIFEST} and {ADAPTER}/ in "
                "it). --base takes local, a GGUF file, or the --out folder of an earlier run."
            )
        recorded = json.loads(manifest.read_text())["base"]
        return BaseRef(
            Path(recorded["gguf"]),
            (*(Path(a) for a in recorded["adapters"]), path / ADAPTER),
        )
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelNotFoundError(f"No GGUF model file at {str(path)!r}.")
        return BaseRef(path)
    raise TuningError(
        f"--base {spec!r} is not something Lamina can fine-tune: it needs the weights, so use "
        "local (the bundled model), local:PATH.gguf, or the --out folder of an earlier run."
    )


def resolve_device(device: str, qlora: bool) -> str:
    """``auto`` → ``cuda`` when torch sees a GPU, else ``cpu``; checks what was asked."""
    torch = require("torch")
    cuda = bool(torch.cuda.is_available())
    check_device(device, qlora, cuda=cuda, torch_version=str(torch.__version__))
    return "cuda" if device == "cuda" or (device == "auto" and cuda) else "cpu"


def check_device(device: str, qlora: bool, *, cuda: bool, torch_version: str) -> None:
    """Refuse what this machine cannot do, before anything is loaded.

    >>> check_device("auto", True, cuda=False, torch_version="2.13.0+cpu")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    lamina.tuning.errors.TuningError: --qlora ... a CUDA GPU, and torch 2.13.0+cpu sees none...
    """
    if qlora and not cuda:
        raise TuningError(
            "--qlora loads the base model in 4 bits with bitsandbytes, which needs a CUDA GPU, "
            f"and torch {torch_version} sees none on this machine. Drop --qlora: plain LoRA "
            "trains the full-precision base on the CPU."
        )
    if qlora and device == "cpu":
        raise TuningError("--qlora needs --device cuda (or auto); bitsandbytes 4-bit is GPU-only.")
    if device == "cuda" and not cuda:
        raise TuningError(
            f"--device cuda, but torch {torch_version} sees no CUDA GPU on this machine. "
            "Use --device cpu (or auto), or install a CUDA build of torch."
        )


def _cache_key(gguf: Path) -> str:
    stat = gguf.stat()
    transformers = require("transformers")
    raw = f"{gguf.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{transformers.__version__}"
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def hf_checkpoint(gguf: Path, home: Path) -> Path:
    """A transformers checkpoint (float32 safetensors, config, tokenizer) of ``gguf``, cached.

    Written to a temporary folder and renamed, so a killed conversion leaves no half cache and
    two processes converting at once both end with a complete one.
    """
    folder = home / "models" / "tuning" / f"{gguf.stem}-{_cache_key(gguf)}"
    if (folder / "config.json").is_file():
        return folder
    transformers = require("transformers")
    safetensors_torch = require("safetensors.torch", "safetensors")
    require("gguf")
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = transformers.AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    except (ValueError, KeyError, NotImplementedError) as exc:
        raise TuningError(
            f"transformers cannot read {gguf.name} for training ({exc}). Fine-tuning supports "
            "the GGUF architectures transformers does (llama, qwen2, mistral, ...)."
        ) from None
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the weights below are plain float32
    tmp.mkdir(parents=True)
    config.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tied = {"lm_head.weight"} if getattr(config, "tie_word_embeddings", False) else set()
    state = {k: v.contiguous() for k, v in model.state_dict().items() if k not in tied}
    safetensors_torch.save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    try:
        tmp.rename(folder)
    except OSError:
        if not (folder / "config.json").is_file():
            raise
        shutil.rmtree(tmp, ignore_errors=True)  # another process finished first
    return folder


def load_tokenizer(ref: BaseRef, home: Path) -> Any:
    transformers = require("transformers")
    tokenizer = transformers.AutoTokenizer.from_pretrained(hf_checkpoint(ref.gguf, home))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not tokenizer.chat_template:
        raise TuningError(
            f"{ref.gguf.name} has no chat template (tokenizer.chat_template), so chat data "
            "cannot be laid out the way the model is served. Use an instruct model's GGUF."
        )
    return tokenizer


def load_base(ref: BaseRef, home: Path, *, device: str = "cpu", qlora: bool = False) -> Any:
    """The base as a transformers model on ``device``, earlier adapters merged in.

    Float32 on the CPU; bfloat16 on a GPU; 4-bit NF4 (bitsandbytes) with ``qlora``.
    """
    torch = require("torch")
    transformers = require("transformers")
    folder = hf_checkpoint(ref.gguf, home)
    kwargs: dict[str, Any] = {}
    if qlora:
        require("bitsandbytes", extra="qlora")
        kwargs["quantization_config"] = transformers.BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
        kwargs["device_map"] = {"": 0}
    elif device == "cuda":
        kwargs["dtype"] = torch.bfloat16
    if ref.adapters and qlora:
        # merging into 4-bit weights rounds the adapter away: merge in full precision first
        raise TuningError(
            "--qlora on top of an earlier run's adapter is not supported yet: run without "
            "--qlora, or start from the GGUF base."
        )
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, **kwargs)
    if ref.adapters:
        peft = require("peft")
        for adapter in ref.adapters:
            model = peft.PeftModel.from_pretrained(model, adapter).merge_and_unload()
    if not qlora:
        model = model.to(device)
    return model
