"""Measure one cell and return its result document. Runs in whatever process the executor picks.

The FP32 reference output of each model is computed once, in its own process, and cached on
disk (``reference_output``); a cell only loads it, so the reference model never inflates the
cell's peak memory.
"""

from __future__ import annotations

import datetime as _dt
import gc
import io
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kit.documents import atomic_write_bytes
from kit.errors import one_line  # also imported from here by kit.run.ray_executor
from kit.results import figures
from kit.results.store import Cell

INPUT_SEED = 1234  # seeded inputs: the same images for every path of a model


@dataclass(frozen=True)
class RunOptions:
    out_dir: str
    profile: str = "full"
    weights: str = "random"
    seed: int = 0
    batch_sweep: tuple[int, ...] = ()
    path_options: dict[str, Any] = field(default_factory=dict)
    command: str | None = None
    # User models (checkpoint directories or models files, `kit.models.user`): each process that
    # measures a cell registers them again before resolving the cell's model id.
    user_models: tuple[str, ...] = ()
    # Fresh processes per cell (kit.run.repeats); None: the profile's default.
    repeats: int | None = None

    def __post_init__(self) -> None:
        if any(b < 1 for b in self.batch_sweep):
            raise ValueError("batch sizes must be >= 1")
        if self.repeats is not None and self.repeats < 1:
            raise ValueError("repeats must be >= 1")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat()


def cache_dir(opts: RunOptions) -> Path:
    return Path(opts.out_dir) / "_cache"


def _reference_file(opts: RunOptions, model_id: str, fingerprint: str, n_images: int) -> Path:
    return cache_dir(opts) / "reference" / f"{model_id}__{fingerprint}__n{n_images}.npz"


def fidelity_inputs(spec: Any, n_images: int) -> np.ndarray:
    from kit.models.build import example_inputs

    return example_inputs(spec, n_images, seed=INPUT_SEED + 1)


def _spec_of(model_id: str, opts: RunOptions) -> Any:
    """The model's spec; user models are registered from ``opts.user_models`` first."""
    from kit.models.registry import get_model
    from kit.models.user import load_sources

    load_sources(opts.user_models)
    return get_model(model_id)


def reference_output(model_id: str, opts: RunOptions) -> dict[str, Any]:
    """Compute (or load) the FP32 PyTorch CPU output of ``model_id`` on the fidelity inputs."""
    import torch

    from kit.models.build import build_model, output_of, weights_fingerprint
    from kit.run.profiles import get_profile

    spec = _spec_of(model_id, opts)
    n_images = get_profile(opts.profile).fidelity_images_for(spec)
    fingerprint = weights_fingerprint(spec, opts.weights, opts.seed)
    target = _reference_file(opts, model_id, fingerprint, n_images)
    if target.exists():
        return {"file": str(target), "computed": False}
    model, _info = build_model(spec, weights=opts.weights, seed=opts.seed, cache_dir=cache_dir(opts))
    pixels = fidelity_inputs(spec, n_images)
    with torch.inference_mode():
        out = output_of(model, spec, torch.from_numpy(pixels)).float().numpy()
    buffer = io.BytesIO()
    np.savez(buffer, output=out)
    atomic_write_bytes(target, buffer.getvalue())  # a killed run never leaves half a reference
    return {"file": str(target), "computed": True}


def load_reference(model_id: str, opts: RunOptions, spec: Any, fingerprint: str) -> np.ndarray:
    from kit.run.profiles import get_profile

    n_images = get_profile(opts.profile).fidelity_images_for(spec)
    target = _reference_file(opts, model_id, fingerprint, n_images)
    if not target.exists():
        reference_output(model_id, opts)
    with np.load(target) as data:
        return data["output"]


def fidelity_meaning(weights: str, caveat: str = "top-1 agreement here is not the published model's") -> str:
    """What a fidelity figure is the error of; with random weights, ``caveat`` says what not to read."""
    if weights == "random":
        return f"the method's error on untrained (seeded random) weights, not the checkpoint's: {caveat}"
    return f"the method's error on the weights from {weights}"


def base_document(cell: Cell, opts: RunOptions, status: str, reason: str | None) -> dict[str, Any]:
    from kit.measure.environment import collect_environment

    now = utc_now()
    return {
        "schema_version": "1",
        "kind": "qkit-result",
        "cell": cell.as_dict(),
        "status": status,
        "reason": reason,
        "profile": opts.profile,
        "model_info": None,
        "path_info": None,
        "math": None,
        "latency": None,
        "throughput": None,
        "memory": None,
        "size": None,
        "fidelity": None,
        "compute": None,
        "batch_sweep": None,
        "environment": collect_environment(opts.command),
        "started_utc": now,
        "finished_utc": now,
        "duration_s": 0.0,
        "command": opts.command,
    }


def skipped_document(cell: Cell, opts: RunOptions, reason: str) -> dict[str, Any]:
    return base_document(cell, opts, "skipped", reason)


def failed_document(cell: Cell, opts: RunOptions, reason: str, started: str | None = None) -> dict[str, Any]:
    doc = base_document(cell, opts, "failed", reason)
    if started:
        doc["started_utc"] = started
    return doc


# A failed cell's reason keeps more of the exception than other one-line messages: a CUDA OOM's
# text names the allocation, the card's capacity and what else holds memory.
REASON_LIMIT = 500


def measure_cell(cell: Cell, opts: RunOptions, *, timing_only: bool = False) -> dict[str, Any]:
    """Measure ``cell``; never raises for a path problem: returns a skipped/failed document.

    ``timing_only``: a repeat process (`kit.run.repeats`): build, prepare, the same warm-up, then
    the profile's ``timing_only_latency``; no fidelity batch, no batch sweep (its document is only
    ever merged into the first process's, which has them)."""
    from kit.paths.base import PathFailed, PathUnavailable, get_path

    started = utc_now()
    t0 = time.perf_counter()
    path = get_path(cell.path)
    ok, why = path.available(cell.device)
    if not ok:
        return skipped_document(cell, opts, why)
    try:
        doc = _measure_available_cell(cell, opts, path, timing_only)
    except PathUnavailable as exc:
        doc = skipped_document(cell, opts, str(exc))
    except PathFailed as exc:
        doc = failed_document(cell, opts, str(exc), started)
    except Exception as exc:
        if _is_oom(exc):
            doc = failed_document(cell, opts, f"out of memory: {one_line(exc, REASON_LIMIT)}", started)
        else:
            doc = failed_document(cell, opts, one_line(exc, REASON_LIMIT), started)
            doc["path_info"] = {"traceback_tail": traceback.format_exc().splitlines()[-6:]}
    doc["started_utc"] = started
    doc["finished_utc"] = utc_now()
    doc["duration_s"] = round(time.perf_counter() - t0, 3)
    return doc


def time_cell(cell: Cell, opts: RunOptions) -> dict[str, Any]:
    """``measure_cell(..., timing_only=True)``: what processes 2..N of a cell run (picklable)."""
    return measure_cell(cell, opts, timing_only=True)


def cell_processes(cell: Cell, measure_fn: Any) -> tuple[Any, bool]:
    """What a runner runs around ``measure_fn`` for ``cell``: the function of processes 2..N
    (`time_cell` for the real measurement, the stand-in itself in tests) and whether the path's
    cached artifacts get a process of their own first (real measurements only)."""
    from kit.paths.base import caches_artifacts

    real = measure_fn is measure_cell
    return (time_cell if real else measure_fn), real and caches_artifacts(cell.path)


def _is_oom(exc: BaseException) -> bool:
    name = type(exc).__name__
    return name in ("OutOfMemoryError", "MemoryError") or "out of memory" in str(exc).lower()


def _gpu_clocks_after_timing(device: str) -> dict[str, Any] | None:
    if device != "cuda":
        return None
    import torch

    from kit.measure.environment import gpu_clocks_now

    return gpu_clocks_now(torch.cuda.current_device())


def _prepare_context(
    cell: Cell, opts: RunOptions, spec: Any, fingerprint: str, work_dir: str, measure_size: bool = True
) -> tuple[Any, dict[str, Any]]:
    """The path's PrepareContext, and the dict ``build_float_model`` fills with how it built."""
    from kit.models.build import build_model
    from kit.paths.base import PrepareContext

    model_info: dict[str, Any] = {}

    def build_float_model() -> Any:
        model, info = build_model(spec, weights=opts.weights, seed=opts.seed, cache_dir=cache_dir(opts))
        model_info.update(info)
        return model

    ctx = PrepareContext(
        spec=spec,
        device=cell.device,
        batch_size=cell.batch_size,
        build_float_model=build_float_model,
        work_dir=work_dir,
        cache_dir=str(cache_dir(opts)),
        weights_fingerprint=fingerprint,
        options=dict(opts.path_options),
        measure_size=measure_size,
    )
    return ctx, model_info


def make_artifacts(cell: Cell, opts: RunOptions) -> dict[str, Any] | None:
    """The path's cached artifacts for ``cell`` (`PrecisionPath.prepare_artifacts`), made in the
    calling process (the runner gives it a process of its own). Problems are left to the measured
    process, which meets them again and reports them as the cell's failure or skip."""
    from kit.models.build import weights_fingerprint
    from kit.paths.base import get_path

    path = get_path(cell.path)
    if not path.available(cell.device)[0]:
        return None
    spec = _spec_of(cell.model, opts)
    with tempfile.TemporaryDirectory(prefix="qkit-artifacts-") as work_dir:
        ctx, _ = _prepare_context(cell, opts, spec, weights_fingerprint(spec, opts.weights, opts.seed), work_dir)
        try:
            return path.prepare_artifacts(ctx)
        except Exception as exc:
            return {"error": one_line(exc, REASON_LIMIT)}


def _measure_available_cell(cell: Cell, opts: RunOptions, path: Any, timing_only: bool = False) -> dict[str, Any]:
    from kit.measure.compute import compute_section
    from kit.measure.environment import math_settings
    from kit.measure.latency import LatencyTracker
    from kit.measure.memory import MemoryTracker
    from kit.models.build import example_inputs, weights_fingerprint
    from kit.run.profiles import get_profile

    profile = get_profile(opts.profile)
    spec = _spec_of(cell.model, opts)
    fingerprint = weights_fingerprint(spec, opts.weights, opts.seed)
    reference = None if timing_only else load_reference(cell.model, opts, spec, fingerprint)
    latency_config = profile.timing_only_latency if timing_only else profile.first_latency(opts.repeats)
    pixels = example_inputs(spec, cell.batch_size, seed=INPUT_SEED)
    fid_pixels = None if reference is None else fidelity_inputs(spec, reference.shape[0])
    doc = base_document(cell, opts, "ok", None)
    with tempfile.TemporaryDirectory(prefix="qkit-cell-") as work_dir:
        ctx, model_info = _prepare_context(cell, opts, spec, fingerprint, work_dir, measure_size=not timing_only)
        gc.collect()
        with MemoryTracker(cell.device) as memory:
            prepared = path.prepare(ctx)
            gc.collect()  # the float model a quantizing path started from is garbage by now
            memory.device_allocator = prepared.device_allocator
            memory.mark_prepared()
            try:
                candidate = None if fid_pixels is None else prepared.run(fid_pixels)
                timed_call = prepared.make_timed_call(pixels)
                timer_device = "cpu" if prepared.host_synchronous else cell.device
                gc.collect()
                # The inference phase: from the first warm-up to the end of the timed loop (the
                # fidelity batch above is not part of it).
                memory.start_inference()
                with LatencyTracker(latency_config, device=timer_device, seed=opts.seed) as tracker:
                    latency = tracker.run(timed_call)
                memory.end_inference()
                clocks = _gpu_clocks_after_timing(cell.device)
                del timed_call
            finally:
                sweep = (
                    _batch_sweep(prepared, spec, cell, opts, profile) if opts.batch_sweep and not timing_only else None
                )
                prepared.close()
    fidelity = (
        None if reference is None or candidate is None else _fidelity(reference, candidate, spec, opts, fingerprint)
    )
    p50 = latency.stats["p50"]
    math = math_settings()
    if clocks is not None:
        math["gpu_clocks_after_timing"] = clocks
    gpu = doc["environment"].get("gpu")
    compute = compute_section(
        spec,
        None,
        cell.batch_size,
        p50,
        gpu["name"] if gpu else None,
        declared_math=path.math_class,
        details=prepared.details,
        math=math,
        cache_dir=cache_dir(opts),
    )
    mem = dict(memory.result)
    if prepared.weight_bytes is not None:
        mem["weights_mb"] = prepared.weight_bytes / 2**20
        mem["weights_source"] = "sum of parameter and buffer bytes as the path holds them (MiB)"
        mem["weight_bytes_by_dtype"] = prepared.weight_bytes_by_dtype
    doc.update(
        {
            "model_info": {
                **model_info,
                "fingerprint": fingerprint,
                "checkpoint": spec.checkpoint,
                "image_size": spec.image_size,
                "head": spec.head,
            },
            "path_info": {"path": cell.path, "family": path.family, **prepared.details},
            "math": math,
            "compute": compute,
            "latency": latency.to_dict(),
            "throughput": {
                "samples_per_s": figures.samples_per_s(cell.batch_size, p50),
                "method": "batch_size / median latency",
            },
            "memory": mem,
            "size": (
                {
                    "bytes": int(prepared.serialized_bytes),
                    "mb": prepared.serialized_bytes / 2**20,
                    "method": prepared.serialized_method or "unspecified",
                }
                if prepared.serialized_bytes is not None
                else None
            ),
            "fidelity": fidelity,
            "batch_sweep": sweep,
        }
    )
    if doc["size"] is None and not timing_only:  # a timing-only process's document is merged into the first's
        doc["status"] = "failed"
        doc["reason"] = f"path {cell.path} reported no serialized size"
    return doc


def _fidelity(
    reference: np.ndarray, candidate: np.ndarray, spec: Any, opts: RunOptions, fingerprint: str
) -> dict[str, Any]:
    from kit.measure.fidelity import compare_outputs

    fidelity = compare_outputs(reference, candidate, classifier=spec.head == "classifier")
    fidelity.update(
        {
            "reference": f"torch-fp32 on cpu, same weights ({fingerprint})",
            "inputs": f"{reference.shape[0]} seeded synthetic images (seed {INPUT_SEED + 1}), model normalisation",
            "output": "logits" if spec.head == "classifier" else "pooled / CLS features",
            "weights": opts.weights,
            "trained_weights": opts.weights != "random",
            "meaning": fidelity_meaning(opts.weights),
        }
    )
    if fidelity.get("top1_agree_count") is not None:
        fidelity["top1_agreement_ci95"] = list(figures.wilson_interval(fidelity.pop("top1_agree_count"), fidelity["n"]))
        fidelity["top1_agreement_ci_method"] = "Wilson score interval, 95%"
    return fidelity


def _batch_sweep(prepared: Any, spec: Any, cell: Cell, opts: RunOptions, profile: Any) -> list[dict[str, Any]]:
    """Latency at each batch size of the sweep; stops at the first OOM and says so."""
    from kit.measure.latency import LatencyTracker
    from kit.models.build import example_inputs

    points: list[dict[str, Any]] = []
    stop_reason: str | None = None
    for bs in opts.batch_sweep:
        if stop_reason:
            points.append({"batch_size": bs, "status": "skipped", "reason": stop_reason})
            continue
        try:
            call = prepared.make_timed_call(example_inputs(spec, bs, seed=INPUT_SEED))
            timer_device = "cpu" if prepared.host_synchronous else cell.device
            res = LatencyTracker(profile.sweep_latency, device=timer_device, seed=opts.seed).run(call)
            del call
        except Exception as exc:
            if _is_oom(exc):
                stop_reason = f"batch {bs} ran out of memory: {one_line(exc, REASON_LIMIT)}"
                points.append({"batch_size": bs, "status": "oom", "reason": stop_reason})
                _free_cuda()
                continue
            points.append({"batch_size": bs, "status": "failed", "reason": one_line(exc, REASON_LIMIT)})
            continue
        p50 = res.stats["p50"]
        points.append(
            {
                "batch_size": bs,
                "status": "ok",
                "reason": None,
                "p50_ms": p50,
                "samples_per_s": figures.samples_per_s(bs, p50),
            }
        )
    return points


def _free_cuda() -> None:
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass
