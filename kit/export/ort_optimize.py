"""ONNX Runtime's transformer optimizer (``onnxruntime.transformers.optimizer``) as a recorded step.

The checked FP32 export is rewritten with ORT's Python fusions (``model_type="vit"``) into a
derived model that every ORT path on the CPU and CUDA providers starts from, FP32 and INT8 alike,
so the FP32 baseline and the quantized models carry the same fusions (like for like).

What fuses on the kit's exports (transformers 5 eager attention, dynamo exporter, opset 20):
GELU -> ``BiasGelu``, residual Add + LayerNorm -> ``SkipLayerNormalization``, and, only after
the `canonicalize_attention` pre-pass below, the attention core -> ``MultiHeadAttention``. The
optimizer's attention patterns do not match these graphs as exported:

* dynamo: transformers 5's eager attention adds a mask built from ``arange >= 0`` even when the
  model has no attention mask; the exporter constant-folds it into ``Where(all-True, 0, -max)``,
  an additive mask of zeros that none of the optimizer's mask patterns knows
  ("failed to match mask path").
* TorchScript (legacy): no mask, but the scores are scaled by ``Mul`` (the patterns expect
  ``Div`` when there is no mask) and Softmax is followed by a float->float ``Cast``
  ("failed to match qk path").

The pre-pass removes the zero mask and the identity Cast and writes the scale as ``Div`` by
sqrt(head size) (only when the Mul's constant is exactly 1/sqrt(an integer), the scale the fused
op applies by default), which is the optimizer's "BERT without mask" pattern. The fused graph is
then checked against the unfused one on seeded images (`FUSION_CHECK_COSINE`).

``MultiHeadAttention`` rather than ``Attention``: the packed ``Attention`` op takes the Q/K/V
weights into the op, so ``quantize_static`` (QDQ) would leave a quarter of each block's weights
in FP32 and ``quantize_dynamic`` would need its QAttention kernel; ``MultiHeadAttention`` fuses
only the core (scores, softmax, context) and leaves the three projections as MatMuls, which both
quantizers handle as before.

``opt_level=0``: only the Python fusions; the session applies ORT's own graph optimizations
(ORT_ENABLE_ALL) at load as for every other model, so the file stays provider-neutral.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import math
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kit.errors import one_line

if TYPE_CHECKING:
    from collections.abc import Iterator

    from kit.models.registry import ModelSpec

MODEL_TYPE = "vit"
OPT_LEVEL = 0
# Bumped whenever canonicalize_attention or the saving changes: part of every cache key.
PRE_PASS_VERSION = 1
FUSION_CHECK_COSINE = 0.9999  # the export check's threshold: a fusion is the same math
FUSION_CHECK_SEED = 0xF05E  # apart from the export-check, calibration and measurement seeds
FUSION_CHECK_BATCH = 2
ATTENTION_OPS = ("MultiHeadAttention", "Attention", "none")
# Contrib ops the fusions write; a graph with none of them was left as it was.
FUSED_OP_TYPES = (
    "Attention",
    "MultiHeadAttention",
    "BiasGelu",
    "FastGelu",
    "Gelu",
    "SkipLayerNormalization",
    "EmbedLayerNormalization",
)


class FusionFailed(Exception):
    """The optimizer failed, or its graph disagrees with the unfused one: one line."""


@dataclass(frozen=True)
class FusionSettings:
    """What the optimizer is asked to fuse (every field is part of the cache key)."""

    model_type: str = MODEL_TYPE
    attention: str = "MultiHeadAttention"  # MultiHeadAttention | Attention | none
    canonicalize: bool = True  # the attention pre-pass (module docstring)
    gelu: bool = True
    bias_gelu: bool = True
    layer_norm: bool = True
    skip_layer_norm: bool = True
    opt_level: int = OPT_LEVEL

    def __post_init__(self) -> None:
        if self.attention not in ATTENTION_OPS:
            raise ValueError(f"attention={self.attention!r}; valid: {', '.join(ATTENTION_OPS)}")

    def fusion_options(self) -> Any:
        from onnxruntime.transformers.fusion_options import FusionOptions

        options = FusionOptions(self.model_type)
        options.enable_attention = self.attention != "none"
        options.use_multi_head_attention = self.attention == "MultiHeadAttention"
        options.enable_gelu = self.gelu
        options.enable_bias_gelu = self.bias_gelu
        options.enable_layer_norm = self.layer_norm
        options.enable_skip_layer_norm = self.skip_layer_norm
        options.enable_bias_skip_layer_norm = self.skip_layer_norm
        # No token embeddings in a ViT: the embed-layer-norm pattern is BERT's word/position/segment.
        options.enable_embed_layer_norm = False
        return options

    def record(self) -> dict[str, Any]:
        return {**asdict(self), "kit_pre_pass_version": PRE_PASS_VERSION}

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.record(), sort_keys=True).encode()).hexdigest()[:16]


def attention_shape(spec: ModelSpec) -> tuple[int, int]:
    """(num_heads, hidden_size) passed to the optimizer: the config's, or 0 = read from the graph.

    Zero where the config has no single width (MobileViT's stages differ): the optimizer then
    reads both from each attention's Reshape.
    """
    heads = spec.config.get("num_attention_heads")
    hidden = spec.config.get("hidden_size")
    if isinstance(heads, int) and isinstance(hidden, int) and heads > 0 and hidden % heads == 0:
        return heads, hidden
    return 0, 0


# --------------------------------------------------------------------------- the pre-pass


def canonicalize_attention(model: Any) -> dict[str, int]:
    """Rewrite the exporters' attention into the optimizer's no-mask pattern, in place.

    Returns how many of each rewrite were made. Each rewrite keeps the math: a zero mask is
    dropped, a float->float Cast is dropped, ``x * (1/sqrt(d))`` becomes ``x / sqrt(d)``.
    """
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    consts: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            consts[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    producer = {o: n for n in graph.node for o in n.output}
    graph_outputs = {o.name for o in graph.output}
    counts: Counter[str] = Counter()

    def value(name: str) -> np.ndarray | None:
        if name in consts:
            return consts[name]
        node = producer.get(name)
        # Expand only repeats a constant: all-True stays all-True.
        if node is not None and node.op_type == "Expand":
            return value(node.input[0])
        return None

    def rename(old: str, new: str) -> None:
        for n in graph.node:
            for i, name in enumerate(n.input):
                if name == old:
                    n.input[i] = new

    removed: list[Any] = []
    for node in list(graph.node):
        if node.op_type == "Add" and node.output[0] not in graph_outputs:
            for keep, other in ((0, 1), (1, 0)):
                where = producer.get(node.input[other])
                if where is None or where.op_type != "Where":
                    continue
                cond, zero = value(where.input[0]), value(where.input[1])
                if cond is None or zero is None or cond.dtype != np.bool_ or not cond.all() or np.any(zero):
                    continue
                rename(node.output[0], node.input[keep])
                removed.append(node)
                counts["zero_mask_add_removed"] += 1
                break
        elif node.op_type == "Cast" and node.output[0] not in graph_outputs:
            src = producer.get(node.input[0])
            to = next((a.i for a in node.attribute if a.name == "to"), None)
            if src is not None and src.op_type == "Softmax" and to == TensorProto.FLOAT:
                rename(node.output[0], node.input[0])
                removed.append(node)
                counts["softmax_identity_cast_removed"] += 1
    for node in removed:
        graph.node.remove(node)

    producer = {o: n for n in graph.node for o in n.output}
    consumers: Counter[str] = Counter(i for n in graph.node for i in n.input)
    for softmax in [n for n in graph.node if n.op_type == "Softmax"]:
        mul = producer.get(softmax.input[0])
        if mul is None or mul.op_type != "Mul" or consumers[mul.output[0]] != 1:
            continue
        for scores, scale_name in ((mul.input[0], mul.input[1]), (mul.input[1], mul.input[0])):
            matmul = producer.get(scores)
            scale = value(scale_name)
            if matmul is None or matmul.op_type != "MatMul" or scale is None or scale.size != 1:
                continue
            s = float(scale.ravel()[0])
            if s <= 0:
                continue
            head = round(s**-2)
            # The fused op scales by 1/sqrt(head size); rewrite only that scale.
            if head < 1 or not math.isclose(s, head**-0.5, rel_tol=1e-6):
                continue
            divisor = f"{mul.name or mul.output[0]}_sqrt_head_size"
            graph.initializer.append(numpy_helper.from_array(np.asarray(math.sqrt(head), dtype=scale.dtype), divisor))
            div = helper.make_node("Div", [scores, divisor], [mul.output[0]], name=f"{mul.name}_as_div")
            index = list(graph.node).index(mul)
            graph.node.remove(mul)
            graph.node.insert(index, div)
            counts["scale_mul_as_div"] += 1
            break
    _prune(graph)
    return dict(counts)


def _prune(graph: Any) -> None:
    """Drop nodes whose outputs nothing reads (the removed masks' Where/Expand chains)."""
    needed = {o.name for o in graph.output}
    changed = True
    while changed:
        changed = False
        used = needed | {i for n in graph.node for i in n.input}
        for node in list(graph.node):
            if not any(o in used for o in node.output):
                graph.node.remove(node)
                changed = True
    used = {i for n in graph.node for i in n.input}
    for tensor in list(graph.initializer):
        if tensor.name not in used:
            graph.initializer.remove(tensor)


# --------------------------------------------------------------------------- fuse


def ort_version() -> str:
    import onnxruntime

    return str(onnxruntime.__version__)


def op_counts(model: Any) -> dict[str, int]:
    return dict(sorted(Counter(n.op_type for n in model.graph.node).items()))


def fuse_file(
    src: Path,
    dst: Path,
    spec: ModelSpec,
    settings: FusionSettings,
    external_data: bool,
) -> dict[str, Any]:
    """The fused copy of ``src`` in ``dst``, checked against ``src``; returns the record."""
    import time

    import onnx
    from onnxruntime.transformers.optimizer import optimize_model

    started = time.perf_counter()
    num_heads, hidden_size = attention_shape(spec)
    model = onnx.load(str(src), load_external_data=True)
    before = op_counts(model)
    rewrites = canonicalize_attention(model) if settings.canonicalize and settings.attention != "none" else {}
    try:
        # The optimizer logs each fusion at INFO/WARNING and prints nothing useful to a cell.
        with _quiet(), contextlib.redirect_stdout(io.StringIO()):
            optimized = optimize_model(
                model,
                model_type=settings.model_type,
                num_heads=num_heads,
                hidden_size=hidden_size,
                optimization_options=settings.fusion_options(),
                opt_level=settings.opt_level,
                use_gpu=False,
            )
            statistics = optimized.get_fused_operator_statistics()
    except Exception as exc:  # the optimizer raises whatever its pattern code hits
        raise FusionFailed(f"onnxruntime.transformers.optimizer failed on {src}: {one_line(exc)}") from None
    fused = optimized.model
    del model
    _declare_contrib_domain(fused)
    _save(fused, dst, external_data)
    after = op_counts(fused)
    del optimized, fused
    record: dict[str, Any] = {
        "optimizer": "onnxruntime.transformers.optimizer.optimize_model",
        "onnxruntime_version": ort_version(),
        "model_type": settings.model_type,
        "num_heads": num_heads,
        "hidden_size": hidden_size,
        "num_heads_source": "model config" if num_heads else "0: read by the optimizer from each Reshape",
        "opt_level": settings.opt_level,
        "settings": settings.record(),
        "fusion_options": _options_record(settings.fusion_options()),
        "pre_pass": rewrites,
        # Only the counts that are not zero: the optimizer lists every op it knows.
        "fused_operator_counts": {k: int(v) for k, v in statistics.items() if v},
        "fused_ops_in_graph": {k: after[k] for k in FUSED_OP_TYPES if after.get(k)},
        "op_counts_before": before,
        "op_counts_after": after,
        "nodes_before": sum(before.values()),
        "nodes_after": sum(after.values()),
        "fuse_seconds": round(time.perf_counter() - started, 3),
    }
    record["check"] = check_fused(src, dst, spec)
    return record


def _declare_contrib_domain(model: Any) -> None:
    """Import the com.microsoft domain when a fused op uses it: with opt_level=0 the optimizer
    does not, ORT loads the model anyway, but onnx's shape inference (run by the quantizers)
    refuses a node of an undeclared domain."""
    from onnx import helper

    domains = {n.domain for n in model.graph.node if n.domain}
    declared = {o.domain for o in model.opset_import}
    for domain in sorted(domains - declared):
        model.opset_import.append(helper.make_opsetid(domain, 1))


def _options_record(options: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, val in sorted(vars(options).items()):
        out[key] = val if isinstance(val, bool | int | float | str) or val is None else str(val)
    return out


def _save(model: Any, dst: Path, external: bool) -> None:
    from kit.export.onnx_export import save_onnx

    save_onnx(model, dst, external)


def check_fused(src: Path, dst: Path, spec: ModelSpec) -> dict[str, Any]:
    """Both graphs run by ORT (CPU, the kit's session options) on seeded images, compared."""
    from kit.export.onnx_export import compare, run_on_cpu
    from kit.models.build import example_inputs

    x = example_inputs(spec, FUSION_CHECK_BATCH, seed=FUSION_CHECK_SEED)
    outputs = []
    for path in (src, dst):
        try:
            outputs.append(run_on_cpu(path, x))
        except Exception as exc:
            raise FusionFailed(f"fusion check: {path} does not run in ONNX Runtime: {one_line(exc)}") from None
    try:
        result = compare(outputs[0], outputs[1])
    except Exception as exc:
        raise FusionFailed(f"fusion check: {one_line(exc)}") from None
    result.update(
        {
            "threshold_cosine": FUSION_CHECK_COSINE,
            "inputs": f"{FUSION_CHECK_BATCH} seeded synthetic images (seed {FUSION_CHECK_SEED}), model normalisation",
            "reference": "the unfused FP32 export, same runtime",
            "runtime": "onnxruntime CPUExecutionProvider, ORT_ENABLE_ALL",
        }
    )
    if not result["finite"] or result["cosine"] < FUSION_CHECK_COSINE:
        raise FusionFailed(
            f"fused graph {dst} disagrees with the unfused export: cosine {result['cosine']:.6f} < "
            f"{FUSION_CHECK_COSINE} (max abs diff {result['max_abs_error']:.3g}, finite={result['finite']})"
        )
    return result


def get_or_fuse(export: Any, spec: ModelSpec, settings: FusionSettings | None = None) -> tuple[Path, dict[str, Any]]:
    """The fused model derived from ``export`` (an `OnnxExport`), cached beside it.

    The cache entry is ``<export>/derived/fused-<digest of the settings and the ORT version>``:
    the export's own key already covers the model, weights and exporter.
    """
    from kit.export.onnx_export import cached_model

    settings = settings or FusionSettings()
    key = hashlib.sha256(f"{settings.digest()}:{ort_version()}".encode()).hexdigest()[:16]
    entry = Path(export.directory) / "derived" / f"fused-{key}"

    def make(target: Path) -> dict[str, Any]:
        return fuse_file(export.onnx_path, target, spec, settings, export.external_data)

    return cached_model(entry, make)


def fusion_digest(record: dict[str, Any]) -> str:
    """What a model derived from the fused graph adds to its own cache key."""
    return hashlib.sha256(
        json.dumps([record.get("settings"), record.get("onnxruntime_version")], sort_keys=True).encode()
    ).hexdigest()[:12]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The optimizer's modules log under bare names (``fusion_attention``, ``onnx_model``...),
    one warning per unmatched pattern: silence WARNING and below while it runs."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)
