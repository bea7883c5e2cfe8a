"""Build an ONNX graph of a BERT sentence encoder straight from ``model.safetensors``.

No torch and no export step: the weights are read with ``safetensors.numpy`` and laid out as
onnxruntime's fused CPU operators (``Attention``, ``SkipLayerNormalization``, ``BiasGelu``),
the graph ORT's transformer optimizer would make from a traced model. Mean pooling and L2
normalisation are part of the graph, so a session returns sentence embeddings directly::

    input_ids (batch, seq) int64, attention_mask (batch, seq) int64
        -> sentence_embedding (batch, hidden) float32, unit length

With ``quantize=True`` every dense layer becomes ``DynamicQuantizeMatMul``: int8 weights with
one symmetric scale per output column, activations quantised per call (per tensor).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import TensorProto, helper, numpy_helper

__all__ = ["GRAPH_VERSION", "build_bert_onnx"]

#: Bump when the graph below changes, so cached files are rebuilt.
GRAPH_VERSION = 1
_MS = "com.microsoft"
_Array = NDArray[Any]


def build_bert_onnx(folder: Path, *, quantize: bool = False) -> onnx.ModelProto:
    """The ONNX model of the BERT encoder in ``folder`` (``config.json`` + ``model.safetensors``).

    Raises ValueError for configurations the graph does not cover (not BERT, relative
    positions, an activation other than exact GELU).
    """
    from safetensors.numpy import load_file

    config: dict[str, Any] = json.loads((folder / "config.json").read_text())
    if config.get("model_type") != "bert":
        raise ValueError(f"model_type is {config.get('model_type')!r}, not 'bert'")
    if config.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError(f"position_embedding_type {config['position_embedding_type']!r}")
    if config.get("hidden_act", "gelu") != "gelu":
        raise ValueError(f"hidden_act {config['hidden_act']!r} (only exact 'gelu' is built)")
    weights = load_file(str(folder / "model.safetensors"))
    prefix = "bert." if "bert.embeddings.word_embeddings.weight" in weights else ""
    return _Builder(weights, prefix, config, quantize).build()


class _Builder:
    def __init__(
        self, weights: dict[str, _Array], prefix: str, config: dict[str, Any], quantize: bool
    ) -> None:
        self.weights = weights
        self.prefix = prefix
        self.hidden = int(config["hidden_size"])
        self.heads = int(config["num_attention_heads"])
        self.layers = int(config["num_hidden_layers"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        self.quantize = quantize
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._count = 0

    def get(self, name: str) -> _Array:
        return np.ascontiguousarray(self.weights[self.prefix + name], dtype=np.float32)

    def const(self, name: str, value: _Array) -> str:
        self.inits.append(numpy_helper.from_array(value, name))
        return name

    def ints(self, name: str, *values: int) -> str:
        return self.const(name, np.array(values, np.int64))

    def node(self, op: str, inputs: list[str], domain: str = "", **attrs: Any) -> str:
        self._count += 1
        out = f"{op.lower()}_{self._count}"
        self.nodes.append(helper.make_node(op, inputs, [out], domain=domain or None, **attrs))
        return out

    def matmul(self, x: str, name: str, weight: _Array, bias: _Array | None = None) -> str:
        """``x @ weight`` with ``weight`` as (in, out). Only the quantised form adds ``bias``:
        in float the bias goes to the fused operator that follows."""
        if not self.quantize:
            return self.node("MatMul", [x, self.const(name, weight)])
        scale = np.maximum(np.abs(weight).max(axis=0), 1e-12) / 127.0
        quantized = np.clip(np.rint(weight / scale), -127, 127).astype(np.int8)
        inputs = [
            x,
            self.const(name + ".q", quantized),
            self.const(name + ".scale", scale.astype(np.float32)),
            self.const(name + ".zero", np.zeros(weight.shape[1], np.int8)),
        ]
        if bias is not None:
            inputs.append(self.const(name + ".bias", bias))
        return self.node("DynamicQuantizeMatMul", inputs, domain=_MS)

    def skip_norm(self, x: str, skip: str, name: str, weights: str, bias: str | None) -> str:
        """LayerNorm(x + skip + bias), one fused operator."""
        inputs = [
            x,
            skip,
            self.const(name + ".w", self.get(weights + ".weight")),
            self.const(name + ".b", self.get(weights + ".bias")),
        ]
        if bias is not None:
            inputs.append(self.const(name + ".bias", self.get(bias)))
        return self.node("SkipLayerNormalization", inputs, domain=_MS, epsilon=self.eps)

    def build(self) -> onnx.ModelProto:
        ids = helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"])
        mask = helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"])
        out = helper.make_tensor_value_info(
            "sentence_embedding", TensorProto.FLOAT, ["batch", self.hidden]
        )
        # A single text is all token type 0: fold that row into the position table.
        positions = self.get("embeddings.position_embeddings.weight")
        positions = positions + self.get("embeddings.token_type_embeddings.weight")[0]
        vocab = self.const("word_embeddings", self.get("embeddings.word_embeddings.weight"))
        words = self.node("Gather", [vocab, "input_ids"])
        seq = self.node("Shape", ["input_ids"], start=1, end=2)
        pos = self.node(
            "Slice", [self.const("position_embeddings", positions), self.ints("i0", 0), seq]
        )
        x = self.skip_norm(words, pos, "emb.ln", "embeddings.LayerNorm", None)
        mask32 = self.node("Cast", ["attention_mask"], to=TensorProto.INT32)

        for i in range(self.layers):
            x = self.layer(x, mask32, i)

        # Mean over real tokens, then unit length: sentence-transformers' Pooling + Normalize.
        m = self.node("Cast", ["attention_mask"], to=TensorProto.FLOAT)
        m = self.node("Unsqueeze", [m, self.ints("axis2", 2)])
        summed = self.node(
            "ReduceSum", [self.node("Mul", [x, m]), self.ints("axis1", 1)], keepdims=0
        )
        count = self.node("ReduceSum", [m, "axis1"], keepdims=0)
        count = self.node("Max", [count, self.const("min_count", np.array(1e-9, np.float32))])
        mean = self.node("Div", [summed, count])
        norm = self.node("ReduceL2", [mean, "axis1"], keepdims=1)
        norm = self.node("Max", [norm, self.const("min_norm", np.array(1e-12, np.float32))])
        self.nodes.append(helper.make_node("Div", [mean, norm], ["sentence_embedding"]))

        graph = helper.make_graph(
            self.nodes, "bert_sentence_encoder", [ids, mask], [out], self.inits
        )
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid(_MS, 1)],
            producer_name="lamina",
        )
        model.ir_version = 9
        return model

    def layer(self, x: str, mask32: str, i: int) -> str:
        at = f"encoder.layer.{i}."
        names = ("query", "key", "value")
        qkv_w = np.concatenate([self.get(f"{at}attention.self.{n}.weight").T for n in names], 1)
        qkv_b = np.concatenate([self.get(f"{at}attention.self.{n}.bias") for n in names])
        if self.quantize:
            qkv = self.matmul(x, f"l{i}.qkv", qkv_w, qkv_b)
            h = self.hidden
            q, k, v = (
                self.node(
                    "Slice",
                    [
                        qkv,
                        self.ints(f"l{i}.s{j}", j * h),
                        self.ints(f"l{i}.e{j}", (j + 1) * h),
                        "axis2",
                    ],
                )
                for j in range(3)
            )
            attn = self.node(
                "MultiHeadAttention", [q, k, v, "", mask32], domain=_MS, num_heads=self.heads
            )
        else:
            weights = [self.const(f"l{i}.qkv", qkv_w), self.const(f"l{i}.qkv.b", qkv_b)]
            attn = self.node("Attention", [x, *weights, mask32], domain=_MS, num_heads=self.heads)
        proj = self.matmul(attn, f"l{i}.attn_out", self.get(f"{at}attention.output.dense.weight").T)
        x = self.skip_norm(
            proj,
            x,
            f"l{i}.ln1",
            f"{at}attention.output.LayerNorm",
            f"{at}attention.output.dense.bias",
        )
        up = self.matmul(x, f"l{i}.ffn_in", self.get(f"{at}intermediate.dense.weight").T)
        bias = self.const(f"l{i}.ffn_in.b", self.get(f"{at}intermediate.dense.bias"))
        up = self.node("BiasGelu", [up, bias], domain=_MS)
        down = self.matmul(up, f"l{i}.ffn_out", self.get(f"{at}output.dense.weight").T)
        return self.skip_norm(
            down, x, f"l{i}.ln2", f"{at}output.LayerNorm", f"{at}output.dense.bias"
        )
