"""Merged weights → a GGUF file that llama.cpp (and so every ``lamina`` command) runs as is.

1. Every key/value of the base GGUF is copied (architecture, hyper-parameters, tokenizer,
   chat template), so the tuned model tokenizes and formats chats exactly like its base.
2. Every tensor of the base GGUF is written from the merged model in float32, under the same
   name and shape. transformers reads Llama's q/k projections un-permuted (llama.cpp stores
   them with the rotary halves interleaved), so they are permuted back here, the same way
   llama.cpp's convert_hf_to_gguf.py does.
3. llama.cpp's own quantizer (:func:`lamina.models.quantize.requantize`) turns that file
   into ``--quant``, choosing per-tensor fallbacks as llama.cpp does (576-wide rows cannot
   hold k-quant blocks).

Exporting the untouched base at the base's own type reproduces it byte for byte (the
round-trip test checks every tensor of the bundled Q4_1 model).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lamina.tuning.base import require
from lamina.tuning.errors import TuningError

__all__ = ["EXPORTABLE", "check_exportable", "gguf_architecture", "write_gguf"]

#: GGUF architectures whose tensors map one-to-one onto transformers' (True: Llama's q/k
#: permutation applies). Only ``llama`` is tested, with the bundled SmolLM2.
EXPORTABLE = {"llama": True, "qwen2": False, "qwen3": False}

_SKIPPED_KEYS = (
    "GGUF.",
    "general.architecture",
    "general.file_type",
    "general.quantization_version",
)
_FILE_TYPE_F32 = 0


def gguf_architecture(path: Path) -> str:
    gguf = require("gguf")
    try:
        return str(gguf.GGUFReader(path).fields["general.architecture"].contents())
    except (ValueError, KeyError, IndexError, OSError) as exc:
        raise TuningError(
            f"{str(path)!r} is not a readable GGUF model file ({exc.__class__.__name__}: {exc})."
        ) from None


def check_exportable(path: Path) -> None:
    """Refuse, before training starts, a base whose architecture cannot be exported."""
    arch = gguf_architecture(path)
    if arch not in EXPORTABLE:
        raise TuningError(
            f"Exporting a {arch!r} model to GGUF is not supported (only "
            f"{', '.join(EXPORTABLE)}). Pass --no-export to train and keep the adapter only."
        )


def _permute(weights: Any, n_head: int, n_head_kv: int | None) -> Any:
    """Interleave the rotary halves of each head's rows, as llama.cpp stores q and k."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (
        weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def write_gguf(model: Any, base: Path, path: Path) -> None:
    """Write ``model``'s weights in float32 as a GGUF laid out like ``base``."""
    gguf = require("gguf")
    np = require("numpy")
    reader = gguf.GGUFReader(base)
    arch = str(reader.fields["general.architecture"].contents())
    permute = EXPORTABLE.get(arch)
    if permute is None:
        check_exportable(base)
    config = model.config
    arch_id = next(k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == arch)
    names = gguf.get_tensor_name_map(arch_id, config.num_hidden_layers)
    state = model.state_dict()
    hf_name: dict[str, str] = {}
    for name in state:
        stem, _, suffix = name.rpartition(".")
        mapped = names.get_name(stem)
        if mapped is not None:
            hf_name.setdefault(f"{mapped}.{suffix}", name)

    writer = gguf.GGUFWriter(path, arch)
    for key, field in reader.fields.items():
        if key.startswith(_SKIPPED_KEYS):
            continue
        vtype = field.types[0]
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(key, field.contents(), vtype, sub_type=sub)
    writer.add_file_type(_FILE_TYPE_F32)
    for tensor in reader.tensors:
        source = hf_name.get(tensor.name)
        if source is None:
            raise TuningError(
                f"No weight of the tuned model maps to {tensor.name!r} of {base.name}."
            )
        data = state[source].detach().float().cpu().numpy()
        if permute and source.endswith("q_proj.weight"):
            data = _permute(data, config.num_attention_heads, config.num_attention_heads)
        elif permute and source.endswith("k_proj.weight"):
            data = _permute(data, config.num_attention_heads, config.num_key_value_heads)
        shape = tuple(int(x) for x in reversed(tensor.shape))  # GGUF lists dimensions inner first
        if data.size != tensor.n_elements:
            raise TuningError(
                f"{source} has {data.size} values, {tensor.name} {tensor.n_elements}."
            )
        writer.add_tensor(tensor.name, np.ascontiguousarray(data.reshape(shape), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
