"""ONNX Runtime static QDQ INT8 (``ort-int8-static-qdq``), diagnosed with ORT's own tooling.

The FP32 graph is the kit's checked export (`kit.export.onnx_export.get_or_export`), fused by
`kit.export.ort_optimize.get_or_fuse` where the path fuses by default on the CPU provider
(`kit.paths.onnxruntime.default_fusion`); the QDQ graph is made by the kit's quantizer with the
path's CPU settings and synthetic calibration (`kit.quantize.ort_quant.quantize_static_file`,
`static_settings_for`, `synthetic_calibration`).
Then, with ``onnxruntime.quantization.qdq_loss_debug``:

* ``modify_model_output_intermediate_tensors`` + ``collect_activations`` save the inputs and
  outputs of every MatMul/Gemm in both graphs (and the QuantizeLinear inputs in the QDQ graph) on
  the diagnosis images, run unoptimised on the CPU provider as the tool does;
* ``create_weight_matching`` + ``compute_weight_error`` give each quantized weight's SQNR;
* ``compute_signal_to_quantization_noice_ratio`` is the SQNR of every comparison (the same
  definition as `kit.diagnose.metrics.sqnr_db`).

A quantized layer is a MatMul/Gemm of the QDQ graph fed by at least one DequantizeLinear. Its
**accumulated** error: its output tensor in the QDQ run against the same tensor in the FP32 run.
Its **local** error: the node recomputed in numpy on the FP32 run's inputs, each input passed
through the QuantizeLinear/DequantizeLinear pair the QDQ graph puts in front of it (scale and zero
point from the graph, round half to even, saturation) or, for weights, dequantized from the graph's
int8 initializer; against the FP32 run's output of the node. Layers are named by the torch module
the exporter recorded (``pkg.torch.onnx.name_scopes``), else by the node.

Keep in float: the kit's ``quantize_static_file`` with exactly the path's settings and calibration,
the kept layers passed as ``nodes_to_exclude``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kit.diagnose.metrics import cosine
from kit.diagnose.records import LayerError
from kit.models.spec import ModelSpec

QUANTIZED_OPS = ("MatMul", "Gemm")


class OrtStaticBackend:
    reference_name = (
        "FP32 ONNX export run by ONNX Runtime (kit.export.onnx_export.get_or_export, checked against PyTorch)"
    )

    def __init__(self, spec: ModelSpec, build: Any, fingerprint: str, cache_dir: str | None) -> None:
        from kit.export.onnx_export import INPUT_NAME, get_or_export
        from kit.export.ort_optimize import FusionSettings, get_or_fuse
        from kit.paths.onnxruntime import default_fusion
        from kit.quantize.ort_quant import quantize_static_file, static_settings_for, synthetic_calibration

        self.spec = spec
        self._tmp = tempfile.TemporaryDirectory(prefix="qkit-diagnose-ort-")
        self.work = Path(self._tmp.name)
        self.export = get_or_export(spec, build, cache_dir or str(self.work / "cache"), fingerprint)
        # The graph the path quantizes by default on the CPU provider: fused or as exported.
        self.base_path = self.export.onnx_path
        self.fusion: dict[str, Any] = {"applied": False, "why": default_fusion("CPUExecutionProvider")[1]}
        if default_fusion("CPUExecutionProvider")[0]:
            self.base_path, record = get_or_fuse(self.export, spec, FusionSettings())
            self.fusion = {"applied": True, **record}
        self.settings = static_settings_for("CPUExecutionProvider")
        self.calibration = synthetic_calibration(spec, self.settings.samples)
        self.qdq_path = self.work / "qdq" / "model.onnx"
        self.qdq_path.parent.mkdir()
        self.quantization = quantize_static_file(
            self.base_path, self.qdq_path, self.settings, self.calibration, INPUT_NAME, self.export.external_data
        )
        self._variants = 0

    # ------------------------------------------------------------------ analysis

    def analyse(self, pixels: np.ndarray) -> tuple[list[LayerError], np.ndarray, np.ndarray]:
        import onnx
        from onnxruntime.quantization.qdq_loss_debug import compute_weight_error, create_weight_matching

        float_acts = self._collect(self.base_path, "float", list(QUANTIZED_OPS), pixels)
        qdq_acts = self._collect(self.qdq_path, "qdq", [*QUANTIZED_OPS, "QuantizeLinear"], pixels)
        with _quiet():
            weight_error = compute_weight_error(create_weight_matching(str(self.base_path), str(self.qdq_path)))
        graph = onnx.load(str(self.qdq_path)).graph
        shapes = _shapes(self.base_path, pixels.shape[0])
        emulator = _Emulator(graph, float_acts, shapes)
        layers: list[LayerError] = []
        for node in graph.node:
            if node.op_type not in QUANTIZED_OPS or not emulator.quantized(node):
                continue
            out = node.output[0]
            # A graph output the quantizer quantized is renamed <name>_QuantizeLinear_Input.
            name = out.removesuffix("_QuantizeLinear_Input")
            ref = _reshaped(float_acts[name][0], shapes.get(name))
            local = emulator.run(node)
            quantized_out = qdq_acts[out][0]
            if name != out:  # the graph output's own QuantizeLinear/DequantizeLinear is this layer's
                local = emulator.output_qdq(out, local)
                quantized_out = emulator.output_qdq(out, quantized_out)
            weight = next((weight_error.get(w) for w in emulator.weights(node) if w in weight_error), None)
            layers.append(
                LayerError(
                    index=len(layers),
                    name=_layer_name(node),
                    kind=node.op_type,
                    node=node.name,
                    local_sqnr_db=_sqnr(ref, local),
                    local_cosine=cosine(ref, local),
                    accumulated_sqnr_db=_sqnr(float_acts[name][0], quantized_out),
                    accumulated_cosine=cosine(float_acts[name][0], quantized_out),
                    weight_sqnr_db=weight,
                    output_shape=list(ref.shape),
                )
            )
        reference = self._run(self.base_path, pixels)
        return layers, reference, self._run(self.qdq_path, pixels)

    def _collect(self, model: Path, tag: str, op_types: list[str], pixels: np.ndarray) -> dict[str, list[np.ndarray]]:
        from onnxruntime.quantization.qdq_loss_debug import (
            collect_activations,
            modify_model_output_intermediate_tensors,
        )

        from kit.export.onnx_export import INPUT_NAME

        target = self.work / f"augmented-{tag}" / "model.onnx"
        target.parent.mkdir(exist_ok=True)
        with _quiet():
            modify_model_output_intermediate_tensors(
                str(model), str(target), op_types, save_as_external_data=self.export.external_data
            )
            # One run on the whole batch: each saved tensor is a list of one flattened array.
            return collect_activations(str(target), [{INPUT_NAME: np.ascontiguousarray(pixels, dtype=np.float32)}])

    def _run(self, model: Path, pixels: np.ndarray) -> np.ndarray:
        from kit.export.onnx_export import run_on_cpu

        return run_on_cpu(model, pixels)

    # ------------------------------------------------------------------ keep in float

    def quantized_output(self, keep: Sequence[LayerError], pixels: np.ndarray) -> np.ndarray:
        self._variants += 1
        target = self.work / f"variant-{self._variants}" / "model.onnx"
        target.parent.mkdir()
        from kit.export.onnx_export import INPUT_NAME
        from kit.quantize.ort_quant import quantize_static_file

        quantize_static_file(
            self.base_path,
            target,
            self.settings,
            self.calibration,
            INPUT_NAME,
            self.export.external_data,
            nodes_to_exclude=[layer.node for layer in keep if layer.node],
        )
        return self._run(target, pixels)

    def record(self) -> dict[str, Any]:
        check = self.export.record.get("check") or {}
        return {
            "method": "onnxruntime.quantization.quantize_static (QDQ) as the path ort-int8-static-qdq on the "
            "CPU provider (kit.quantize.ort_quant), layers measured with onnxruntime.quantization.qdq_loss_debug; "
            "kept-in-float layers passed as nodes_to_exclude",
            "quantization": self.quantization,
            "export": {k: self.export.record.get(k) for k in ("exporter", "opset", "cache_hit", "fallback_from")},
            "export_check_vs_pytorch": check,
        }

    def close(self) -> None:
        self._tmp.cleanup()


@contextlib.contextmanager
def _quiet() -> Any:
    """ORT's quantization tools log hints at WARNING and print calibration progress."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


def _sqnr(reference: Any, candidate: Any) -> float:
    from onnxruntime.quantization.qdq_loss_debug import compute_signal_to_quantization_noice_ratio

    ref = [np.asarray(r, dtype=np.float64).ravel() for r in (reference if isinstance(reference, list) else [reference])]
    cand = [
        np.asarray(c, dtype=np.float64).ravel() for c in (candidate if isinstance(candidate, list) else [candidate])
    ]
    return float(compute_signal_to_quantization_noice_ratio(ref, cand))


def _layer_name(node: Any) -> str:
    """The torch module the exporter recorded for ``node`` (``vit.layers.0.mlp.fc1``), an attention
    product as ``<module>:<op>``, or the node's own name when the export recorded no scopes."""
    import ast

    scopes = next((p.value for p in node.metadata_props if p.key == "pkg.torch.onnx.name_scopes"), None)
    if not scopes:
        return str(node.name)
    try:
        parts = [str(s) for s in ast.literal_eval(scopes)]
    except (ValueError, SyntaxError):
        return str(node.name)
    modules = [s for s in parts[:-1] if s]
    if not modules:
        return str(node.name)
    module = modules[-1].removeprefix("model.").removeprefix("model")
    leaf = parts[-1]
    return module if leaf.startswith("linear") else f"{module}:{leaf}"


def _shapes(onnx_path: Path, batch: int) -> dict[str, list[int | None]]:
    """Tensor shapes of the FP32 graph by name, from ONNX shape inference with the batch fixed."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    for inp in model.graph.input:
        dims = inp.type.tensor_type.shape.dim
        if dims and not dims[0].dim_value:
            dims[0].dim_value = batch
    # Shape inference may fail on an exotic graph: the flattened size still resolves one unknown dim.
    with contextlib.suppress(Exception):
        model = onnx.shape_inference.infer_shapes(model)
    out: dict[str, list[int | None]] = {}
    for info in [*model.graph.value_info, *model.graph.input, *model.graph.output]:
        dims = info.type.tensor_type.shape.dim
        out[info.name] = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    return out


def _reshaped(flat: np.ndarray, shape: list[int | None] | None) -> np.ndarray:
    """``flat`` (collect_activations saves tensors flattened) in the graph's shape; one unknown
    dimension is solved from the size. ValueError when the shape cannot be had."""
    if shape is None:
        raise ValueError("no shape")
    known = int(np.prod([d for d in shape if d])) if any(shape) else 1
    unknown = [i for i, d in enumerate(shape) if not d]
    dims = list(shape)
    if len(unknown) > 1:
        raise ValueError("more than one unknown dimension")
    if unknown:
        dims[unknown[0]] = flat.size // known
    return np.asarray(flat).reshape([int(d or 0) for d in dims])


class _Emulator:
    """Recomputes a quantized MatMul/Gemm of the QDQ graph on the FP32 run's inputs."""

    def __init__(
        self, graph: Any, float_acts: dict[str, list[np.ndarray]], shapes: dict[str, list[int | None]]
    ) -> None:
        from onnx import numpy_helper

        self.producer = {out: node for node in graph.node for out in node.output}
        self.init = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        self.float_acts = float_acts
        self.shapes = shapes

    def quantized(self, node: Any) -> bool:
        return any(self._dq(name) is not None for name in node.input[:2])

    def weights(self, node: Any) -> list[str]:
        """FP32 names of the node's quantized constant inputs (create_weight_matching's keys)."""
        names = []
        for name in node.input[:2]:
            dq = self._dq(name)
            if dq is not None and dq.input[0] in self.init:
                names.append(dq.input[0].removesuffix("_quantized"))
        return names

    def _dq(self, name: str) -> Any:
        node = self.producer.get(name)
        return node if node is not None and node.op_type == "DequantizeLinear" else None

    def _value(self, name: str) -> np.ndarray:
        if name in self.init:
            return self.init[name].astype(np.float32)
        dq = self._dq(name)
        if dq is None:
            return _reshaped(self.float_acts[name][0], self.shapes.get(name)).astype(np.float32)
        axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
        scale = self.init[dq.input[1]]
        zero = self.init[dq.input[2]] if len(dq.input) > 2 and dq.input[2] else np.zeros_like(scale, dtype=np.int8)
        source = dq.input[0]
        if source in self.init:
            q = self.init[source].astype(np.float32)
        else:
            quant = self.producer[source]  # the QuantizeLinear in front: same scale and zero point
            x = _reshaped(self.float_acts[quant.input[0]][0], self.shapes.get(quant.input[0])).astype(np.float32)
            return self._qdq(x, scale, zero, axis)
        ndim = q.ndim
        return ((q - _axis(zero, axis, ndim).astype(np.float32)) * _axis(scale, axis, ndim)).astype(np.float32)

    def _qdq(self, x: np.ndarray, scale: np.ndarray, zero: np.ndarray, axis: int) -> np.ndarray:
        info = np.iinfo(zero.dtype)
        q = np.clip(np.rint(x / _axis(scale, axis, x.ndim)) + _axis(zero, axis, x.ndim), info.min, info.max)
        return ((q - _axis(zero, axis, x.ndim).astype(np.float32)) * _axis(scale, axis, x.ndim)).astype(np.float32)

    def output_qdq(self, tensor: str, x: np.ndarray) -> np.ndarray:
        """``x`` through the QuantizeLinear/DequantizeLinear the graph applies to ``tensor``."""
        quant = next(n for n in self.producer.values() if n.op_type == "QuantizeLinear" and n.input[0] == tensor)
        scale = self.init[quant.input[1]]
        zero = (
            self.init[quant.input[2]]
            if len(quant.input) > 2 and quant.input[2]
            else np.zeros_like(scale, dtype=np.int8)
        )
        axis = next((a.i for a in quant.attribute if a.name == "axis"), 1)
        return self._qdq(np.asarray(x, dtype=np.float32), scale, zero, axis)

    def run(self, node: Any) -> np.ndarray:
        a, b = self._value(node.input[0]), self._value(node.input[1])
        if node.op_type == "MatMul":
            return np.matmul(a, b)
        attrs = {at.name: (at.i if at.type == 2 else at.f) for at in node.attribute}
        if attrs.get("transA"):
            a = a.T
        if attrs.get("transB"):
            b = b.T
        out = float(attrs.get("alpha", 1.0)) * (a @ b)
        if len(node.input) > 2 and node.input[2]:
            out = out + float(attrs.get("beta", 1.0)) * self._value(node.input[2])
        return np.asarray(out, dtype=np.float32)


def _axis(values: np.ndarray, axis: int, ndim: int) -> np.ndarray:
    """A per-tensor or per-axis scale/zero point shaped to broadcast against an ``ndim`` tensor."""
    values = np.asarray(values)
    if values.size == 1:
        return values.reshape(())
    shape = [1] * ndim
    shape[axis % ndim] = values.size
    return values.reshape(shape)
