"""`diagnose`: build the FP32 model, pick the method's backend, measure every layer, search the
keep-in-float set, and return a `Diagnosis` (the command prints it; `document` writes it)."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from kit.diagnose.keep_float import search
from kit.diagnose.metrics import COSINE_DEFINITION, SQNR_DEFINITION, both
from kit.diagnose.records import Diagnosis, LayerError
from kit.errors import BadInput, one_line
from kit.models.spec import ModelSpec

TORCH_PATHS = ("torch-int8-dynamic",)
BNB_PATHS = ("bnb-int8", "bnb-nf4", "bnb-fp4")
ORT_PATHS = ("ort-int8-static-qdq",)
SUPPORTED_PATHS: tuple[str, ...] = TORCH_PATHS + BNB_PATHS + ORT_PATHS
DEFAULT_TARGET_COSINE = 0.995
DEFAULT_IMAGES = 8
# The images a cell's fidelity is measured on (kit/run/cell.py: INPUT_SEED + 1), so a diagnosis
# explains the same numbers the result documents show.
INPUT_SEED = 1235
DEVICE = "cpu"  # every method here runs on CPU; bitsandbytes on CUDA is a ROADMAP item


class Backend(Protocol):
    reference_name: str

    def analyse(self, pixels: np.ndarray) -> tuple[list[LayerError], np.ndarray, np.ndarray]: ...

    def quantized_output(self, keep: Any, pixels: np.ndarray) -> np.ndarray: ...

    def record(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


def fidelity_meaning(weights: str) -> str:
    """What the numbers are the error of: the cells' label (`kit.run.cell.fidelity_meaning`)."""
    from kit.run.cell import fidelity_meaning as label

    return label(weights, "which layers cost fidelity here need not be the ones that cost the published model's")


def check_path(path: str) -> None:
    """`BadInput` naming the supported paths unless diagnose supports ``path`` and it runs here."""
    if path not in SUPPORTED_PATHS:
        raise BadInput(f"diagnose does not support path {path!r}; supported paths: {', '.join(SUPPORTED_PATHS)}")
    from kit.paths.base import get_path

    ok, why = get_path(path).available(DEVICE)
    if not ok:
        raise BadInput(f"{path} cannot run on {DEVICE} here: {why}")


def resolve_model(model_id: str) -> ModelSpec:
    from kit.models.registry import get_model

    try:
        return get_model(model_id)
    except KeyError as exc:
        raise BadInput(str(exc).strip("'\"")) from None


def _float_builder(spec: ModelSpec, weights: str, seed: int) -> tuple[Callable[[], Any], dict[str, Any]]:
    from kit.models.build import WeightsUnavailable, build_model

    try:
        model, info = build_model(spec, weights=weights, seed=seed)
    except (ValueError, WeightsUnavailable, OSError) as exc:
        raise BadInput(f"--weights {weights}: {one_line(exc)}") from None
    return (lambda: model), info


def _backend(
    path: str, spec: ModelSpec, float_model: Any, build: Callable[[], Any], fingerprint: str, cache_dir: str | None
) -> Backend:
    if path in TORCH_PATHS:
        from kit.diagnose.torch_methods import TorchDynamicBackend

        return TorchDynamicBackend(spec, float_model)
    if path in BNB_PATHS:
        from kit.diagnose.torch_methods import BnbBackend

        return BnbBackend(spec, float_model, path, fingerprint)
    from kit.diagnose.ort_qdq import OrtStaticBackend

    return OrtStaticBackend(spec, build, fingerprint, cache_dir)


def diagnose(
    model_id: str,
    path: str,
    *,
    weights: str = "random",
    seed: int = 0,
    images: int = DEFAULT_IMAGES,
    target_cosine: float | None = DEFAULT_TARGET_COSINE,
    cache_dir: str | None = None,
    build_float_model: Callable[[], Any] | None = None,
    fingerprint: str | None = None,
) -> Diagnosis:
    """Diagnose ``path`` on ``model_id``: per-layer errors, worst first, and the keep-in-float set.

    ``target_cosine`` None skips the keep-in-float search. ``build_float_model`` (with a
    ``fingerprint`` naming those weights) replaces the model the weights would build: tests pass a
    deliberately broken model this way. ``cache_dir`` keeps ONNX exports between runs.
    """
    from kit.models.build import example_inputs, weights_fingerprint

    spec = resolve_model(model_id)
    check_path(path)
    if images < 1:
        raise BadInput(f"--images {images}: expected at least 1")
    if target_cosine is not None and not 0.0 < target_cosine <= 1.0:
        raise BadInput(f"--target-cosine {target_cosine}: expected a number in (0, 1]")
    timings: dict[str, float] = {}
    started = time.perf_counter()
    if build_float_model is None:
        build, info = _float_builder(spec, weights, seed)
        fingerprint = fingerprint or weights_fingerprint(spec, weights, seed)
    else:
        build, info = build_float_model, {"weights": weights, "source": "a model built by the caller"}
        fingerprint = fingerprint or f"caller-{id(build_float_model)}"
    float_model = build()
    timings["build_seconds"] = round(time.perf_counter() - started, 3)
    pixels = example_inputs(spec, images, seed=INPUT_SEED)
    backend = _backend(path, spec, float_model, build, fingerprint, cache_dir)
    try:
        t0 = time.perf_counter()
        layers, reference, quantized = backend.analyse(pixels)
        timings["analyse_seconds"] = round(time.perf_counter() - t0, 3)
        if not layers:
            raise BadInput(f"{path} quantized no layer of {model_id}: nothing to diagnose")
        final = _final(spec, reference, quantized)
        keep = None
        if target_cosine is not None:
            t0 = time.perf_counter()
            worst = sorted(layers, key=lambda layer: layer.sort_key)
            keep = search(
                worst,
                reference,
                lambda kept: backend.quantized_output(kept, pixels),
                target_cosine,
                final["cosine"],
                final["sqnr_db"],
            )
            timings["keep_in_float_seconds"] = round(time.perf_counter() - t0, 3)
        record = backend.record()
    finally:
        backend.close()
        del float_model
        gc.collect()
    timings["total_seconds"] = round(time.perf_counter() - started, 3)
    return Diagnosis(
        model=spec.id,
        path=path,
        device=DEVICE,
        weights=weights,
        weights_info={k: v for k, v in info.items() if k in ("weights", "seed", "weights_source", "init", "source")},
        fidelity_meaning=fidelity_meaning(weights),
        inputs={
            "images": images,
            "seed": INPUT_SEED,
            "generator": "kit.models.build.example_inputs: uniform [0,1] pixels normalised with the model's "
            "mean/std (the images of a cell's fidelity)",
            "shape": list(pixels.shape),
            "metrics": {"sqnr_db": SQNR_DEFINITION, "cosine": COSINE_DEFINITION},
            "local": "the quantized layer fed the FP32 model's input to that layer, against the FP32 layer's output",
            "accumulated": "the whole quantized model's output of that layer against the FP32 model's",
            "order": "worst first: lowest local SQNR",
        },
        reference=backend.reference_name,
        quantization=record,
        final=final,
        layers=layers,
        keep_in_float=keep,
        timings=timings,
    )


def _final(spec: ModelSpec, reference: np.ndarray, quantized: np.ndarray) -> dict[str, Any]:
    """The final (primary) output against FP32: the kit's fidelity measures plus SQNR."""
    from kit.measure.fidelity import compare_outputs

    sqnr, _ = both(reference, quantized)
    out = compare_outputs(reference, quantized, classifier=spec.head == "classifier")
    out["sqnr_db"] = sqnr
    out["output"] = spec.primary_output
    out.pop("top1_agree_count", None)
    return out
