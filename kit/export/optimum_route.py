"""optimum's ONNX Runtime route: optimum's exporter, ``ORTOptimizer`` and ``ORTQuantizer``.

Offered beside the kit's own route (`kit.export.onnx_export` + `kit.quantize.ort_quant`) where
optimum is installed and knows the model, so a Hugging Face user can compare the route they know
with the kit's. It is a recorded option, never a silent substitute: the record names optimum's
version, the export task and opset, the optimization and quantization configs, and timings.

Where it can run
----------------
* The CUDA image's stack (transformers 4.55.4, torch 2.1.0, onnx 1.16.2, onnxruntime-gpu 1.18.0):
  optimum 1.27.0, the last release with the exporter and ``optimum.onnxruntime`` in the package
  itself (docker/requirements-cuda.in says why not optimum-onnx: it needs torch >= 2.4).
* Not the CPU lock: optimum-onnx 0.1.0, the newest ONNX release of optimum, requires
  transformers < 4.58, and that lock has transformers 5. `optimum_status` says so, and
  `optimum_model` raises `OptimumUnavailable` with that line (the ORT path turns it into a
  skipped cell, as it does with its other "not here" reasons).

What optimum supports here, and what the kit adds
-------------------------------------------------
* Export: ``onnx_export_from_model`` on the kit's own float model object (not a
  ``save_pretrained`` round trip: optimum would reload DeiT-with-teacher as
  ``DeiTForImageClassification``, whose head the checkpoint does not have). Tasks: classifiers ->
  ``image-classification`` (output ``logits``); backbones -> ``feature-extraction``, whose only
  output is ``last_hidden_state``: the kit's CLS-token models (DINO), and DINOv2, whose
  ``pooler_output`` is the layer-normed CLS token, get a ``Gather`` of token 0 appended so the
  graph's one output is the kit's primary output. Backbones whose pooler is a layer of its own
  (ViT's dense+tanh, BEiT's mean-pool + LayerNorm) are not available: optimum does not export it.
* Optimize (``ORTOptimizer`` + ``OptimizationConfig``): only model types in optimum's
  ``ORTConfigManager`` (here ``vit`` and ``dinov2`` among the study's families; not ``deit``,
  ``beit``, ``mobilevit``): asking to optimize another is unavailable, with optimum's own list.
* Quantize (``ORTQuantizer`` + ``AutoQuantizationConfig.avx512_vnni(is_static=False, ...)``):
  optimum's dynamic INT8 as its docs show it, per-tensor unless asked, MatMul only: optimum's
  default operator list makes a ConvInteger that ORT's CPU provider cannot run (`DEFAULT_OPERATORS`).
* Check: the kit's own, not optimum's atol validation (which is off): the FP32 graph must give
  cosine >= `EXPORT_CHECK_COSINE` against PyTorch on seeded images, as the kit's exports must; the
  INT8 graph's cosine is recorded (fidelity is the cell's to measure).

The model is traced with eager attention, as the kit's exports are, so the two routes export the
same math. optimum is imported inside functions only: the kit imports without it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import functools
import gc
import hashlib
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from kit.errors import one_line
from kit.export.onnx_export import (
    CHECK_BATCH,
    CHECK_SEED,
    EXPORT_CHECK_COSINE,
    MODEL_FILE,
    cached_model,
    onnx_file_bytes,
    onnx_files,
    run_on_cpu,
    use_eager_attention,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from kit.models.spec import ModelSpec

Kind = Literal["fp32", "int8-dynamic"]
KINDS: tuple[str, ...] = ("fp32", "int8-dynamic")
# optimum's optimization levels: 1 basic, 2 + transformers fusions (attention, LayerNorm, GELU),
# 3 + GELU approximation (changes the math), 99 all. 2 is the highest that keeps the math exact.
DEFAULT_LEVEL = 2
# The newest optimum ONNX release and the transformers bound it declares (optimum-onnx 0.1.0).
OPTIMUM_ONNX_NEWEST = "0.1.0"
# What docker/requirements-cuda.in pins (it says why).
OPTIMUM_PINNED = "1.27.0"
OPTIMUM_ONNX_TRANSFORMERS_BELOW = (4, 58)
OUTPUT_NAME = "primary_output"
# Operators ORTQuantizer quantizes. Not optimum's default (all of ORT's IntegerOps registry): that
# includes Conv, written as ConvInteger with int8 weights, which ORT 1.18's CPU provider has no
# kernel for ("Could not find an implementation for ConvInteger(10)"): every ViT's patch
# embedding is a Conv, so the default model does not load. MatMul is where the FLOPs are (the
# exporter writes each Linear as MatMul + Add), as in the kit's own dynamic route.
DEFAULT_OPERATORS: tuple[str, ...] = ("MatMul",)
# The kit's primary outputs that are token 0 of optimum's last_hidden_state (see the docstring).
_CLS_FROM_HIDDEN = {("cls_token", None), ("pooler_output", "dinov2")}


class OptimumUnavailable(Exception):
    """optimum cannot run this here (not installed, model type or output not supported): one line.

    The ORT paths turn it into ``PathUnavailable`` (a skipped cell); it is defined here because
    ``kit.export`` sits below ``kit.paths`` in the layers.
    """


class OptimumFailed(Exception):
    """optimum ran but its result is wrong (the FP32 export disagrees with PyTorch): one line."""


class OptimumContext(Protocol):
    """What the route reads from a `kit.paths.base.PrepareContext` (which satisfies this)."""

    @property
    def spec(self) -> ModelSpec: ...
    @property
    def build_float_model(self) -> Callable[[], Any]: ...
    @property
    def work_dir(self) -> str: ...
    @property
    def cache_dir(self) -> str: ...
    @property
    def weights_fingerprint(self) -> str: ...


# --------------------------------------------------------------------------- status


def _transformers_version() -> str:
    try:
        import transformers
    except ImportError:
        return "none"
    return str(transformers.__version__)


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


@functools.lru_cache(maxsize=1)
def optimum_status() -> tuple[bool, str]:
    """Whether optimum's ONNX Runtime route can run here; if not, one line that says why.

    The exporter and ``optimum.onnxruntime`` ship in ``optimum`` itself up to 1.27 and in
    ``optimum-onnx`` from optimum 2.0 on; either counts, if it imports with this torch.
    """
    from importlib import metadata

    installed = {}
    for dist in ("optimum", "optimum-onnx"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            installed[dist] = metadata.version(dist)
    tf = _transformers_version()
    if "optimum" not in installed:
        if tf != "none" and _version_tuple(tf) >= OPTIMUM_ONNX_TRANSFORMERS_BELOW:
            below = ".".join(map(str, OPTIMUM_ONNX_TRANSFORMERS_BELOW))
            why = (
                f"optimum is not installed: optimum-onnx {OPTIMUM_ONNX_NEWEST} (its newest ONNX release) "
                f"requires transformers<{below}, this stack has transformers {tf}"
            )
        else:
            why = f"optimum is not installed (transformers {tf}); the CUDA image pins optimum {OPTIMUM_PINNED}"
        return False, why
    try:
        # model_configs, not just the package: optimum-onnx's model patcher touches torch.rms_norm
        # (torch >= 2.4) at import, which the lazy package import would not reveal.
        import optimum.exporters.onnx.model_configs  # type: ignore[import-not-found]
        import optimum.onnxruntime  # type: ignore[import-not-found]  # noqa: F401
    except Exception as exc:  # ImportError, AttributeError, or a version check optimum raises
        import torch

        found = ", ".join(f"{k} {v}" for k, v in installed.items())
        return False, (
            f"optimum's ONNX route does not import ({found}, transformers {tf}, torch {torch.__version__}): "
            f"{one_line(exc)}"
        )
    return True, ""


def optimum_versions() -> dict[str, str | None]:
    """optimum, optimum-onnx, onnxruntime, onnx, transformers and torch versions, as installed."""
    from importlib import metadata

    out: dict[str, str | None] = {}
    for dist in ("optimum", "optimum-onnx", "onnxruntime", "onnxruntime-gpu", "onnx", "transformers", "torch"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


# --------------------------------------------------------------------------- support


def task_for(spec: ModelSpec, model_type: str) -> tuple[str, bool]:
    """optimum's export task for ``spec``, and whether token 0 must be gathered from its output.

    Raises `OptimumUnavailable` for a primary output optimum's export does not produce.
    """
    if spec.primary_output == "logits":
        return "image-classification", False
    for output, mtype in _CLS_FROM_HIDDEN:
        if spec.primary_output == output and mtype in (None, model_type):
            return "feature-extraction", True
    raise OptimumUnavailable(
        f"optimum's feature-extraction export of {model_type} has last_hidden_state only; "
        f"{spec.id}'s primary output ({spec.primary_output}) is a layer optimum does not export"
    )


def _check_export_support(model_type: str, task: str) -> None:
    # The ONNX configs register themselves with the TasksManager when this module is imported.
    import optimum.exporters.onnx.model_configs  # noqa: F401
    from optimum.exporters.tasks import TasksManager  # type: ignore[import-not-found]

    try:
        tasks = TasksManager.get_supported_tasks_for_model_type(model_type, "onnx", library_name="transformers")
    except Exception as exc:  # KeyError for an unknown model type
        raise OptimumUnavailable(f"optimum has no ONNX export config for {model_type}: {one_line(exc)}") from None
    if task not in tasks:
        raise OptimumUnavailable(f"optimum's ONNX config for {model_type} has no {task} task (it has {sorted(tasks)})")


def _check_optimize_support(model_type: str) -> None:
    from optimum.onnxruntime.utils import ORTConfigManager  # type: ignore[import-not-found]

    try:
        ORTConfigManager.get_model_ort_type(model_type)
    except KeyError:
        known = ", ".join(sorted(ORTConfigManager._conf))
        raise OptimumUnavailable(
            f"optimum's ORTOptimizer does not support model type {model_type} (it knows {known})"
        ) from None


# --------------------------------------------------------------------------- records


def _plain(value: Any) -> Any:
    """A config value as JSON: enums by name, dataclasses and containers recursively."""
    if isinstance(value, enum.Enum):
        return value.name
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _opset_of(path: Path) -> int | None:
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    for imp in proto.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    return None


def _op_counts(path: Path) -> dict[str, int]:
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    counts: dict[str, int] = {}
    for node in proto.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items()))


# --------------------------------------------------------------------------- steps


def _export(model: Any, spec: ModelSpec, out_dir: Path, task: str, opset: int | None) -> tuple[Path, dict[str, Any]]:
    from optimum.exporters.onnx import onnx_export_from_model

    started = time.perf_counter()
    onnx_export_from_model(
        model,
        out_dir,
        task=task,
        opset=opset,
        do_validation=False,  # the kit's cosine check below is the one that decides
        device="cpu",
        # No post-processing step of optimum's own (it deduplicates decoder weights; none here).
        no_post_process=True,
    )
    path = out_dir / MODEL_FILE
    if not path.is_file():
        raise OptimumFailed(f"optimum's export wrote no {MODEL_FILE} in {out_dir}")
    return path, {
        "exporter": "optimum.exporters.onnx.onnx_export_from_model",
        "task": task,
        "opset_requested": opset,
        "opset": _opset_of(path),
        "export_seconds": round(time.perf_counter() - started, 3),
    }


def _gather_cls(path: Path) -> None:
    """Append ``Gather(last_hidden_state, 0, axis=1)`` as the graph's one output (in place)."""
    import onnx
    from onnx import TensorProto, helper

    proto = onnx.load(str(path))
    hidden = proto.graph.output[0].name
    index = helper.make_tensor("kit_cls_index", TensorProto.INT64, [], [0])
    proto.graph.initializer.append(index)
    proto.graph.node.append(helper.make_node("Gather", [hidden, "kit_cls_index"], [OUTPUT_NAME], axis=1))
    del proto.graph.output[:]
    proto.graph.output.append(helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch_size", None]))
    onnx.save(proto, str(path))


def _optimize(src_dir: Path, out_dir: Path, level: int) -> tuple[Path, dict[str, Any]]:
    from optimum.onnxruntime import ORTOptimizer
    from optimum.onnxruntime.configuration import OptimizationConfig  # type: ignore[import-not-found]

    started = time.perf_counter()
    config = OptimizationConfig(optimization_level=level, optimize_for_gpu=False)
    optimizer = ORTOptimizer.from_pretrained(src_dir, file_names=[MODEL_FILE])
    optimizer.optimize(optimization_config=config, save_dir=out_dir, file_suffix="optimized")
    path = out_dir / "model_optimized.onnx"
    if not path.is_file():
        raise OptimumFailed(f"ORTOptimizer wrote no {path.name} in {out_dir}")
    seconds = round(time.perf_counter() - started, 3)
    fused: dict[str, int] | str
    try:
        fused = {k: int(v) for k, v in ORTOptimizer.get_fused_operators(path).items()}
    except Exception as exc:  # the statistics are optional; the optimized model is what counts
        fused = f"not available: {one_line(exc)}"
    return path, {
        "optimizer": "optimum.onnxruntime.ORTOptimizer",
        "optimization_config": _plain(config),
        "fused_operators": fused,
        "optimize_seconds": seconds,
    }


def _quantize(src: Path, out_dir: Path, per_channel: bool, operators: tuple[str, ...]) -> tuple[Path, dict[str, Any]]:
    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    started = time.perf_counter()
    config = AutoQuantizationConfig.avx512_vnni(
        is_static=False, per_channel=per_channel, operators_to_quantize=list(operators)
    )
    quantizer = ORTQuantizer.from_pretrained(src.parent, file_name=src.name)
    quantizer.quantize(quantization_config=config, save_dir=out_dir, file_suffix="quantized")
    path = out_dir / f"{src.stem}_quantized.onnx"
    if not path.is_file():
        raise OptimumFailed(f"ORTQuantizer wrote no {path.name} in {out_dir}")
    factory = (
        f"AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel={per_channel}, "
        f"operators_to_quantize={list(operators)})"
    )
    return path, {
        "quantizer": "optimum.onnxruntime.ORTQuantizer",
        "quantization_config_factory": factory,
        "quantization_config": _plain(config),
        "quantize_seconds": round(time.perf_counter() - started, 3),
    }


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """The worst sample's cosine (`kit.measure.fidelity.cosine` per sample; NaN stays NaN)."""
    from kit.measure.fidelity import cosine as flat_cosine

    return float(np.min([flat_cosine(x, y) for x, y in zip(a, b, strict=True)]))


def _copy_model(src: Path, target: Path) -> None:
    """The graph as ``target`` and its external data files beside it (their names kept)."""
    files = onnx_files(src)
    shutil.copyfile(files[0], target)
    for extra in files[1:]:
        shutil.copyfile(extra, target.parent / extra.name)


# --------------------------------------------------------------------------- public


def optimum_model(
    ctx: OptimumContext,
    kind: Kind,
    optimize: bool,
    *,
    level: int = DEFAULT_LEVEL,
    per_channel: bool = False,
    operators: tuple[str, ...] = DEFAULT_OPERATORS,
    opset: int | None = None,
) -> tuple[Path, dict[str, Any]]:
    """optimum's ONNX model of ``ctx.spec``: exported, optionally ``ORTOptimizer``-ed at ``level``,
    and for ``int8-dynamic`` quantized by ``ORTQuantizer`` (avx512_vnni, dynamic).

    Cached under ``<cache_dir>/onnx-optimum/<model>/<key>/model.onnx`` (key: weights fingerprint,
    versions, every setting). Returns the model path and its record. Raises `OptimumUnavailable`
    (not installed, model type/output/optimization not supported: a skipped cell) or
    `OptimumFailed` (the FP32 export disagrees with PyTorch: a failed cell); ValueError for a bad
    ``kind``.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown optimum model kind {kind!r}; valid: {', '.join(KINDS)}")
    ok, why = optimum_status()
    if not ok:
        raise OptimumUnavailable(why)
    spec = ctx.spec
    model_type = _model_type(spec)
    task, gather = task_for(spec, model_type)
    _check_export_support(model_type, task)
    if optimize:
        _check_optimize_support(model_type)

    versions = optimum_versions()
    settings = {
        "kind": kind,
        "optimize": optimize,
        "level": level if optimize else None,
        "per_channel": per_channel if kind == "int8-dynamic" else None,
        "operators": list(operators) if kind == "int8-dynamic" else None,
        "opset": opset,
    }
    # kit.quantize is a sibling layer (no imports either way), so the key is hashed here.
    payload = [spec.id, ctx.weights_fingerprint, versions, settings, "eager"]
    key = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]
    entry = Path(ctx.cache_dir) / "onnx-optimum" / spec.id / key

    def make(target: Path) -> dict[str, Any]:
        args = (kind, optimize, level, per_channel, operators, opset, task, gather)
        return _make(ctx, target, *args, versions=versions, settings=settings)

    try:
        return cached_model(entry, make)
    except (OptimumUnavailable, OptimumFailed, MemoryError):
        raise
    except Exception as exc:  # optimum/ORT raise ValueError, RuntimeError, onnx errors ...
        raise OptimumFailed(f"optimum route failed: {type(exc).__name__}: {one_line(exc)[:300]}") from None


def _model_type(spec: ModelSpec) -> str:
    from kit.models.build import make_config

    return str(make_config(spec).model_type)


def _make(
    ctx: OptimumContext,
    target: Path,
    kind: str,
    optimize: bool,
    level: int,
    per_channel: bool,
    operators: tuple[str, ...],
    opset: int | None,
    task: str,
    gather: bool,
    *,
    versions: dict[str, str | None],
    settings: dict[str, Any],
) -> dict[str, Any]:
    import torch

    from kit.models.build import example_inputs, primary_output_module

    spec = ctx.spec
    inputs = example_inputs(spec, CHECK_BATCH, seed=CHECK_SEED)
    record: dict[str, Any] = {
        "route": "optimum",
        "versions": versions,
        "settings": settings,
        "weights_fingerprint": ctx.weights_fingerprint,
    }
    Path(ctx.work_dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="optimum-", dir=ctx.work_dir) as scratch:
        root = Path(scratch)
        model = ctx.build_float_model()
        record["attn_implementation_built"] = getattr(model.config, "_attn_implementation", None)
        record["attn_implementation_exported"] = use_eager_attention(model)
        with torch.no_grad():
            expected = primary_output_module(model, spec)(torch.from_numpy(inputs)).float().numpy()
        export_path, record["export"] = _export(model, spec, root / "export", task, opset)
        del model
        gc.collect()
        if gather:
            _gather_cls(export_path)
        record["export"]["output"] = "token 0 of last_hidden_state (Gather appended)" if gather else "logits"
        record["export"]["ops"] = _op_counts(export_path)
        fp32_cos = cosine(run_on_cpu(export_path, inputs), expected)
        record["export"]["check"] = {"images": CHECK_BATCH, "seed": CHECK_SEED, "cosine_vs_torch": fp32_cos}
        if not fp32_cos >= EXPORT_CHECK_COSINE:
            raise OptimumFailed(
                f"optimum's export of {spec.id} disagrees with PyTorch: cosine {fp32_cos:.6f} < {EXPORT_CHECK_COSINE}"
            )
        current = export_path
        record["optimization"] = None
        if optimize:
            current, record["optimization"] = _optimize(export_path.parent, root / "optimized", level)
            record["optimization"]["ops"] = _op_counts(current)
        record["fp32_file_bytes"] = onnx_file_bytes(current)
        record["quantization"] = None
        if kind == "int8-dynamic":
            try:
                current, record["quantization"] = _quantize(current, root / "quantized", per_channel, operators)
            except RuntimeError as exc:
                # onnxruntime 1.18's quantizer cannot type the MatMuls next to ORTOptimizer's fused
                # com.microsoft ops (on ViT-B/16: SkipLayerNormalization, BiasGelu) ("Unable to find
                # data type for weight_name=..."): on this stack optimize-then-quantize is not
                # runnable, a fact of the route, not a failure.
                if optimize and "Unable to find data type" in str(exc):
                    ort = versions.get("onnxruntime-gpu") or versions.get("onnxruntime")
                    raise OptimumUnavailable(
                        f"ORTQuantizer (onnxruntime {ort}) cannot quantize ORTOptimizer's output: {one_line(exc)[:160]}"
                    ) from None
                raise
            record["quantization"]["ops"] = _op_counts(current)
        record["cosine_vs_torch"] = cosine(run_on_cpu(current, inputs), expected)
        record["opset"] = _opset_of(current)
        _copy_model(current, target)
    return record
