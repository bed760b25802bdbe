"""INT8 with ``onnxruntime.quantization``: dynamic (weights int8 ahead, activations per run) and
static QDQ (activation ranges calibrated ahead, QuantizeLinear/DequantizeLinear pairs in the graph).

The settings are part of the method, so every one is recorded, and the defaults are chosen, not
inherited (ORT's defaults quantize every op with per-tensor weights; a scratch run here got
logits cosine 0.81-0.98 from default static QDQ and made MobileViT-S 6x slower with default
dynamic quantization):

* dynamic: QInt8 weights, per-tensor, MatMul/Gemm only, constant-B MatMuls only. Convolutions
  stay FP32: ORT runs a dynamically quantized Conv as DynamicQuantizeLinear + ConvInteger + Cast
  + Mul, which has no NCHWc kernel and no fused activation: on MobileViT-S (mostly convolutions)
  ConvInteger took 107 ms per run against 10 ms of FP32 Conv, the model 0.19x FP32. Per-channel
  weights were no faster (ViT-B/16: 58 ms against 56 ms) and per-tensor already gives logits
  cosine 0.999 there.
* static QDQ: per-channel QInt8 weights, MatMul/Gemm only, constant-B MatMuls only (the
  attention score and context products stay FP32: their ranges vary per image and they are a
  small share of the FLOPs), MinMax calibration on 8 images. ORT's ``MatMulConstBOnly`` is
  honoured only by its QOperator format, not by QDQ (onnxruntime 1.32 put Q/DQ pairs on the
  activation x activation MatMuls: 24 of the 97 quantized layers of DeiT-tiny, 8 of its 10 worst
  by `qkit diagnose`), so `quantize_static_file` passes those MatMuls as ``nodes_to_exclude``
  itself. The outputs of Gemm nodes (the heads: the exports' only 2-D linear layers) are not
  quantized: their output is the logits, and rounding them to uint8 took tiny-vit's output SQNR
  from 26.9 to 19.7 dB. Convolutions stay FP32 here too:
  on MobileViT-XXS quantizing its 35 convolutions moved logits cosine from 0.9994 to 0.989 (every
  conv costs ~0.1%, no single culprit; Percentile/Entropy calibration and leaving depthwise
  convs out did not help) and made it slower still: on MobileViT-S QLinearConv itself beats FP32
  Conv (4.4 against 10.4 ms) but ORT runs it in NHWC, so Transposes (17 ms) and DQ/Q pairs at
  every unquantized SiLU come with it: 0.55x FP32, against 0.97x without. On the ViTs the only
  conv is the patch embedding, < 1% of the FLOPs. ``static_op_types=MatMul,Gemm,Conv``
  puts them back. Activations: asymmetric QUInt8 for the CPU provider (MLAS's fast VNNI kernels
  are u8 x s8; symmetric s8 activations ran ViT-B/16 1.9x slower); symmetric QInt8 for
  CUDA/TensorRT (TensorRT accepts only symmetric int8 with zero point 0).

Calibration memory: ORT's MinMax calibrator adds a ReduceMin/ReduceMax pair per tensor it
needs as graph outputs, so what it keeps per calibration batch is two scalars per tensor; peak
memory is one forward's activations (batches here are single images). Restricting the quantized
ops (and constant-B MatMuls only) keeps the attention matrices out of the calibrated tensors
altogether: a scratch run was OOM-killed at 24 GB on DINOv2-L at 518 px without this.
Entropy and Percentile keep every calibrated tensor of every batch for their histograms
(sample count x activations): use them with few samples on large models.
``CalibMaxIntermediateOutputs`` is *not* used: in onnxruntime 1.32 ``collect_data`` clears the
collected outputs when that count is reached without folding them into the ranges, i.e. it
silently drops calibration data.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from kit.models.registry import ModelSpec

CALIBRATION_SEED = 0xCA11B  # apart from the measurement (1234), fidelity (1235), export-check seeds
DEFAULT_CALIBRATION_SAMPLES = 8
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm")
CALIBRATION_METHODS = ("MinMax", "Entropy", "Percentile")
QUANT_TYPES = ("QInt8", "QUInt8")


class CalibrationError(ValueError):
    """Calibration data that cannot be used (no images, unreadable folder): one line."""


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class DynamicSettings:
    weight_type: str = "QInt8"
    per_channel: bool = False
    reduce_range: bool = False
    op_types: tuple[str, ...] = ("MatMul", "Gemm")
    matmul_const_b_only: bool = True

    def __post_init__(self) -> None:
        _check_type("weight_type", self.weight_type)

    def record(self) -> dict[str, Any]:
        return {
            "quantizer": "onnxruntime.quantization.quantize_dynamic",
            "format": "QOperator (DynamicQuantizeLinear + MatMulInteger, fused by ORT at load)",
            "weight_type": self.weight_type,
            "activation_type": "QUInt8, asymmetric, range computed per run (DynamicQuantizeLinear)",
            "per_channel": self.per_channel,
            "reduce_range": self.reduce_range,
            "op_types_quantized": list(self.op_types),
            "matmul_const_b_only": self.matmul_const_b_only,
            "calibration": None,
        }


@dataclass(frozen=True)
class StaticSettings:
    activation_type: str = "QUInt8"
    activation_symmetric: bool = False
    weight_type: str = "QInt8"
    weight_symmetric: bool = True
    per_channel: bool = True
    reduce_range: bool = False
    op_types: tuple[str, ...] = ("MatMul", "Gemm")
    matmul_const_b_only: bool = True
    calibrate_method: str = "MinMax"
    percentile: float = 99.999
    samples: int = DEFAULT_CALIBRATION_SAMPLES

    def __post_init__(self) -> None:
        _check_type("activation_type", self.activation_type)
        _check_type("weight_type", self.weight_type)
        if self.calibrate_method not in CALIBRATION_METHODS:
            raise ValueError(
                f"unknown calibration method {self.calibrate_method!r}; valid: {', '.join(CALIBRATION_METHODS)}"
            )
        if self.samples < 1:
            raise ValueError("calibration needs at least 1 sample")

    def extra_options(self) -> dict[str, Any]:
        extra: dict[str, Any] = {
            "ActivationSymmetric": self.activation_symmetric,
            "WeightSymmetric": self.weight_symmetric,
            "MatMulConstBOnly": self.matmul_const_b_only,
            "OpTypesToExcludeOutputQuantization": ["Gemm"],
        }
        if self.calibrate_method == "Percentile":
            extra["CalibPercentile"] = self.percentile
        return extra

    def record(self) -> dict[str, Any]:
        return {
            "quantizer": "onnxruntime.quantization.quantize_static",
            "format": "QDQ",
            "activation_type": self.activation_type,
            "activation_symmetric": self.activation_symmetric,
            "weight_type": self.weight_type,
            "weight_symmetric": self.weight_symmetric,
            "per_channel": self.per_channel,
            "reduce_range": self.reduce_range,
            "op_types_quantized": list(self.op_types),
            "matmul_const_b_only": self.matmul_const_b_only,
            # QDQ ignores MatMulConstBOnly: the kit passes those MatMuls as nodes_to_exclude.
            "matmul_const_b_only_by": "nodes_to_exclude" if self.matmul_const_b_only else None,
            "calibration_method": self.calibrate_method,
            "calibration_percentile": self.percentile if self.calibrate_method == "Percentile" else None,
            "calibration_samples_requested": self.samples,
            "extra_options": self.extra_options(),
        }


def _check_type(name: str, value: str) -> None:
    if value not in QUANT_TYPES:
        raise ValueError(f"{name} must be one of {', '.join(QUANT_TYPES)}, not {value!r}")


def static_settings_for(provider: str, overrides: dict[str, Any] | None = None) -> StaticSettings:
    """The default static settings for an execution provider, with path-option overrides."""
    base: dict[str, Any] = {}
    if provider != "CPUExecutionProvider":
        # TensorRT takes only symmetric int8 (zero point 0); the CUDA provider runs the same file.
        base.update(activation_type="QInt8", activation_symmetric=True)
    base.update({k: v for k, v in (overrides or {}).items() if v is not None})
    if isinstance(base.get("op_types"), str):
        base["op_types"] = tuple(x for x in base["op_types"].replace(",", " ").split() if x)
    return StaticSettings(**base)


def settings_digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


# --------------------------------------------------------------------------- calibration data


@dataclass
class CalibrationSource:
    """Calibration images (float32 NCHW, one per batch) and where they came from."""

    batches: list[np.ndarray]
    record: dict[str, Any] = field(default_factory=dict)


def synthetic_calibration(spec: ModelSpec, samples: int, seed: int = CALIBRATION_SEED) -> CalibrationSource:
    """Seeded synthetic images with the model's normalisation (no image folder given)."""
    from kit.models.build import example_inputs

    batches = [example_inputs(spec, 1, seed=seed + i) for i in range(samples)]
    return CalibrationSource(
        batches,
        {
            "source": "synthetic",
            "description": "uniform [0,1] pixels normalised with the model's mean/std (kit.models.build."
            "example_inputs), one image per batch",
            "seeds": [seed, seed + samples - 1],
            "samples": samples,
        },
    )


def folder_calibration(spec: ModelSpec, directory: str | os.PathLike[str], samples: int) -> CalibrationSource:
    """Up to ``samples`` images from ``directory`` (sorted by name), resized and normalised."""
    folder = Path(directory)
    if not folder.is_dir():
        raise CalibrationError(f"calibration directory {folder} does not exist")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise CalibrationError(f"calibration directory {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    chosen = files[:samples]
    batches = [load_image(spec, p) for p in chosen]
    digest = hashlib.sha256("\n".join(f"{p.relative_to(folder)}:{p.stat().st_size}" for p in chosen).encode())
    return CalibrationSource(
        batches,
        {
            "source": "image folder",
            "directory": str(folder.resolve()),
            "description": f"first {len(chosen)} of {len(files)} images by path; shorter side resized "
            f"to {spec.image_size} (bicubic), centre crop, RGB, /255, model mean/std",
            "samples": len(chosen),
            "files_digest": digest.hexdigest()[:20],
        },
    )


def load_image(spec: ModelSpec, path: Path) -> np.ndarray:
    """One image as a normalised float32 (1, 3, S, S) array."""
    try:
        from PIL import Image
    except ImportError as exc:
        raise CalibrationError(f"reading calibration images needs Pillow: {exc}") from None
    try:
        with Image.open(path) as img:
            rgb = img.convert("RGB")
    except Exception as exc:  # PIL raises UnidentifiedImageError, OSError, ...
        raise CalibrationError(f"calibration image {path} is unreadable: {exc}") from None
    size = spec.image_size
    scale = size / min(rgb.size)
    resized = rgb.resize(
        (max(size, round(rgb.width * scale)), max(size, round(rgb.height * scale))), Image.Resampling.BICUBIC
    )
    left, top = (resized.width - size) // 2, (resized.height - size) // 2
    crop = resized.crop((left, top, left + size, top + size))
    pixels = np.asarray(crop, dtype=np.float32) / 255.0
    mean = np.asarray(spec.mean, dtype=np.float32)
    std = np.asarray(spec.std, dtype=np.float32)
    chw = ((pixels - mean) / std).transpose(2, 0, 1)
    return np.ascontiguousarray(chw[None], dtype=np.float32)


def _reader(input_name: str, batches: list[np.ndarray]) -> Any:
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        """Feeds one image at a time; ORT's calibrator pulls until None."""

        def __init__(self) -> None:
            self._it: Iterator[np.ndarray] = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self._it, None)
            return None if batch is None else {input_name: batch}

        def rewind(self) -> None:
            self._it = iter(batches)

    return Reader()


# --------------------------------------------------------------------------- quantizers


def _quant_type(name: str) -> Any:
    from onnxruntime.quantization import QuantType

    return getattr(QuantType, name)


def quantize_dynamic_file(src: Path, dst: Path, settings: DynamicSettings, external_data: bool) -> dict[str, Any]:
    """Dynamic INT8 of ``src`` into ``dst``; returns the settings record."""
    import logging

    from onnxruntime.quantization import quantize_dynamic

    with _quiet(logging.getLogger()), private_source(src, dst) as source:
        quantize_dynamic(
            str(source),
            str(dst),
            op_types_to_quantize=list(settings.op_types),
            per_channel=settings.per_channel,
            reduce_range=settings.reduce_range,
            weight_type=_quant_type(settings.weight_type),
            use_external_data_format=external_data,
            extra_options={"MatMulConstBOnly": settings.matmul_const_b_only},
        )
    return settings.record()


def activation_matmuls(model_path: Path) -> list[str]:
    """The MatMul nodes of a graph whose B input is not a constant (activation x activation: the
    attention score and context products), by name. A constant is an initializer or a Constant
    node, possibly through Transpose/Reshape/Cast/Identity/Unsqueeze/Squeeze."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    constant = {init.name for init in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}
    passthrough = {"Transpose", "Reshape", "Cast", "Identity", "Unsqueeze", "Squeeze"}

    def is_constant(name: str) -> bool:
        for _ in range(8):
            if name in constant:
                return True
            node = producers.get(name)
            if node is None:
                return False
            if node.op_type == "Constant":
                return True
            if node.op_type not in passthrough or not node.input:
                return False
            name = node.input[0]
        return False

    return [n.name for n in graph.node if n.op_type == "MatMul" and len(n.input) > 1 and not is_constant(n.input[1])]


def quantize_static_file(
    src: Path,
    dst: Path,
    settings: StaticSettings,
    calibration: CalibrationSource,
    input_name: str,
    external_data: bool,
    nodes_to_exclude: tuple[str, ...] | list[str] = (),
) -> dict[str, Any]:
    """Static QDQ INT8 of ``src`` into ``dst`` calibrated on ``calibration``; returns the record.

    ``nodes_to_exclude``: nodes kept in float besides the activation x activation MatMuls that
    ``settings.matmul_const_b_only`` leaves out (`qkit diagnose` keeps its layers in float so)."""
    import io
    import logging

    from onnxruntime.quantization import CalibrationMethod, QuantFormat, quantize_static

    const_b_excluded = activation_matmuls(src) if settings.matmul_const_b_only and "MatMul" in settings.op_types else []
    excluded = sorted({*const_b_excluded, *nodes_to_exclude})

    # Histogram calibrators print progress to stdout.
    with _quiet(logging.getLogger()), contextlib.redirect_stdout(io.StringIO()), private_source(src, dst) as source:
        quantize_static(
            str(source),
            str(dst),
            _reader(input_name, calibration.batches),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(settings.op_types),
            per_channel=settings.per_channel,
            reduce_range=settings.reduce_range,
            activation_type=_quant_type(settings.activation_type),
            weight_type=_quant_type(settings.weight_type),
            use_external_data_format=external_data,
            calibrate_method=getattr(CalibrationMethod, settings.calibrate_method),
            calibration_providers=["CPUExecutionProvider"],
            extra_options=settings.extra_options(),
            nodes_to_exclude=excluded,
        )
    record = settings.record()
    record["calibration"] = {**calibration.record, "providers": ["CPUExecutionProvider"], "batch_size": 1}
    record["excluded_activation_matmuls"] = len(const_b_excluded)
    record["excluded_nodes"] = sorted(set(nodes_to_exclude))
    return record


@contextlib.contextmanager
def private_source(src: Path, dst: Path) -> Iterator[Path]:
    """A copy of ``src`` (and its external data) in a scratch directory beside ``dst``, for ORT's
    quantizers.

    They write ``<model>-inferred.onnx`` beside the model they are given (shape inference's
    output) and delete it afterwards, so two quantizers of one export at once (two Ray workers
    quantizing one model, or two runs sharing a cache) would delete each other's file. A copy,
    because onnx refuses external data behind a symbolic or hard link; it is cheap beside the
    quantization (ViT-L/16's 1.2 GB in 0.45 s on the reference machine, from the page cache).
    The scratch directory goes when the quantizer is done."""
    import shutil
    import tempfile

    scratch = Path(tempfile.mkdtemp(prefix=".source-", dir=dst.parent))
    try:
        for name in {src.name, *_external_files(src)}:
            shutil.copyfile(src.parent / name, scratch / name)
        yield scratch / src.name
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _external_files(model_path: Path) -> set[str]:
    """The external data files ``model_path`` names (its initializers' locations)."""
    import onnx
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    graph = onnx.load(str(model_path), load_external_data=False).graph
    return {ExternalDataInfo(t).location for t in graph.initializer if uses_external_data(t)}


class _quiet:
    """ORT's quantizer logs a pre-processing hint at WARNING on every call; keep cells quiet."""

    def __init__(self, logger: Any) -> None:
        self.logger = logger
        self.level = logger.level

    def __enter__(self) -> None:
        import logging

        self.logger.setLevel(logging.ERROR)

    def __exit__(self, *exc: object) -> None:
        self.logger.setLevel(self.level)


def settings_as_dict(settings: DynamicSettings | StaticSettings) -> dict[str, Any]:
    return asdict(settings)
