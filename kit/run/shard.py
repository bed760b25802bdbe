"""Deterministic, cost-balanced shards of a matrix: ``qkit reproduce --shard K/N``.

Every job of a job array plans the same matrix and keeps only its own part, so the partition must
depend on nothing but the cells (and the profile): no clock, no hardware probe, no installed
package. It is balanced by *expected cost*, not by count: a ViT-H/14 cell costs two orders of
magnitude more than a DeiT-tiny one.

The cost model (``cell_cost``, in seconds on a *reference machine*; only ratios matter)
---------------------------------------------------------------------------------------
A cell's time is roughly what ``kit.run.cell.measure_cell`` does, term by term::

    cost = CELL_OVERHEAD_S                          fork, environment, reference load, writing
         + build_s(params, device)                  seeded weights from the run's cache (+ host-to-device copy)
         + prepare_s(path, params, forward)         quantize / load through bnb / ONNX export ...
         + warm-up + timing phase                   from the profile's LatencyConfig:
               max(warmup_iterations * f, warmup_s) + clamp(min_iterations * f,
                                                            min_duration_s, max_duration_s)
         + fidelity_images / batch * f              the fidelity pass
    f = (launch floor + FLOPs(model, batch) / device rate) * path factor

FLOPs come from ``kit.models.flops.model_flops`` (analytic, config-based); where it cannot count
a model, ``2 * params * tokens`` stands in (tokens = (image_size / patch)^2 + 1, or
(image_size / 16)^2 for a config without a patch size). Device rates are effective FP32 rates:
``CPU_GFLOPS`` and the per-forward floors fitted to the reference run's FP32 batch-1 medians,
``CUDA_GFLOPS`` a batch-1 rate of an A100-class GPU on ViT-sized models. Path factors are each
path's declared ``cost`` (`kit.paths.base.PathFacts`), relative to FP32 on the same device; they
are coarse (within ~2x of what the seeds and the kit's own runs show) and only steer the balance.
The prepare term prices the path's declared ``prepare_steps``. A cell whose path does not declare
its device (``torch-int8-dynamic`` on CUDA) is a fast skip; a name the registry does not know costs
as FP32.

A shard also pays, once per model it holds, for that model's FP32 CPU reference
(``reference_cost``): this is why cells of one model are kept together where the balance allows.

The partition (``shard_cells``)
-------------------------------
Greedy longest-processing-time (LPT) over *units* into ``n`` bins, largest unit first, each to
the least-loaded bin (ties: lowest bin index; unit order ties: the unit's first cell key). A unit
is a whole model (its cells plus one reference), except that a model costing more than ``alpha``
times the mean shard is cut into the fewest pieces of at most that size (LPT inside the model,
each piece paying the reference again). The partition is computed for alpha = 1, 1/2, 1/4, ...
down to single cells; each is judged by its makespan (largest shard, references counted once per
model per shard), and the coarsest one (fewest models cut) whose makespan is within
``BALANCE_TARGET`` of the best is taken. Membership depends only on the set of cells, their keys
and the profile (not on input order, hash seed or machine); cells come back in input order, so a
shard still runs model by model.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from kit.results.store import Cell

SHARD_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")
BALANCE_TARGET = 1.05  # keep models whole unless splitting them shortens the largest shard by > 5%
MAX_CUTS = 40
MAX_SHARDS = 10_000

# Reference machine constants (see module docstring).
# CPU: fitted to the torch-fp32 batch-1 medians of the reference run (2-core Xeon with AMX,
# 2026-12-05): DeiT-T 14.8 ms at 2.5 GFLOPs and ViT-H/14 1183 ms at 334.6 GFLOPs give 284 GFLOP/s
# and a 6 ms floor (Python and dispatch of ~120-330 modules); the other ViT-family models fall
# within about 20 %. MobileViT is dispatch-bound (many small convolutions, unfold/fold): XXS at
# 0.8 GFLOPs takes 24.5 ms and S at 4.0 GFLOPs 39.7 ms, a ~22 ms floor of its own.
CPU_GFLOPS = 284.0
CUDA_GFLOPS = 10_000.0  # effective batch-1 FP32 on an A100-class GPU
CPU_FLOOR_S = 0.006  # per-forward floor (Python + dispatch)
CPU_FLOOR_S_BY_FAMILY: dict[str, float] = {"mobilevit": 0.022}
CUDA_FLOOR_S = 0.003  # per-forward kernel-launch floor at small batch
CELL_OVERHEAD_S = 0.3  # a fresh process: fork, environment, reference load, writing (0.1-0.35 s measured)
SKIP_COST_S = 0.05
BUILD_S_PER_PARAM = 2e-9  # the seeded weights loaded from the run's cache: 1.2 s for ViT-H/14's 632 M
INIT_S_PER_PARAM = 25e-9  # the model's first build: the seeded init (8.0 s for ViT-H/14) and its save
H2D_BYTES_PER_S = 5e9
ORT_EXPORT_FIXED_S = 2.0
ORT_EXPORT_S_PER_PARAM = 30e-9  # torch.onnx.export + serialisation
ORT_QUANTIZE_S_PER_PARAM = 20e-9
ORT_FUSE_FIXED_S = 1.0  # load, the attention pre-pass, optimize_model, the output check, save
ORT_FUSE_S_PER_PARAM = 10e-9
ORT_CALIBRATION_PASSES = 16
# The FP32 directory bitsandbytes' loader reads, saved once per model into the run's cache, and
# the quantizing load itself (every process): 16 ns/param together, as calibrated before the split.
FP32_SAVE_S_PER_PARAM = 8e-9
BNB_LOAD_S_PER_PARAM = 8e-9
TORCH_QUANTIZE_S_PER_PARAM = 2e-9


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` -> ``(k, n)``, 1 <= k <= n; ``ValueError`` with a one-line message otherwise."""
    m = SHARD_RE.match(str(text))
    if not m:
        raise ValueError(f"--shard takes K/N (e.g. 2/8), got {text!r}")
    k, n = int(m.group(1)), int(m.group(2))
    if n < 1 or n > MAX_SHARDS:
        raise ValueError(f"--shard {text!r}: N must be between 1 and {MAX_SHARDS}")
    if not 1 <= k <= n:
        raise ValueError(f"--shard {text!r}: K must be between 1 and N={n} (shards are numbered from 1)")
    return k, n


# ---------------------------------------------------------------------------------------- cost


@functools.cache
def _facts(path: str) -> Any:
    """The path's declared facts (static: never whether it is *available* here, which would make
    the partition depend on the planning machine); None for a name the registry does not know."""
    from kit.paths.base import path_facts

    return path_facts().get(path)


def _path_factor(path: str, device: str) -> float:
    facts = _facts(path)
    return facts.cost.get(device, 1.0) if facts is not None else 1.0


@functools.cache
def _path_runs_on(path: str, device: str) -> bool:
    facts = _facts(path)
    return facts is None or facts.runs_on(device)


def _spec(model: str) -> Any:
    from kit.models.registry import get_model

    return get_model(model)


@functools.cache
def model_gflops(model: str, batch_size: int = 1) -> float:
    """Forward GFLOPs of ``model`` at ``batch_size``: analytic count, or 2 x params x tokens."""
    try:
        from kit.models.flops import model_flops

        return model_flops(model, batch_size=batch_size).gflops
    except (ImportError, ValueError, KeyError, TypeError):
        spec = _spec(model)
        patch = spec.config.get("patch_size") if isinstance(spec.config, dict) else None
        patch = patch if isinstance(patch, int) and patch > 0 else 16
        tokens = (spec.image_size // patch) ** 2 + 1
        return 2.0 * spec.real_params * tokens * batch_size / 1e9


def _forward_s(model: str, device: str, batch_size: int) -> float:
    gflops = model_gflops(model, batch_size)
    if device == "cuda":
        return CUDA_FLOOR_S + gflops / CUDA_GFLOPS
    return CPU_FLOOR_S_BY_FAMILY.get(_spec(model).family, CPU_FLOOR_S) + gflops / CPU_GFLOPS


def _profile(profile: str) -> Any:
    from kit.run.profiles import get_profile

    return get_profile(profile)


def _measure_s(forward_s: float, lat: Any) -> float:
    """Warm-up and timing under the LatencyConfig ``lat``."""
    warm = max(lat.warmup_iterations * forward_s, lat.warmup_s)
    timed = max(lat.min_iterations * forward_s, lat.min_duration_s)
    if lat.max_duration_s is not None:
        timed = min(timed, max(lat.max_duration_s, forward_s))  # at least one timed call
    return warm + timed


def _prepare_s_of(step: str, params: int, forward_s: float) -> float:
    """Seconds of one prepare step (kit.paths.base.PREPARE_STEPS)."""
    price = {
        "onnx-export": ORT_EXPORT_FIXED_S + ORT_EXPORT_S_PER_PARAM * params,
        "ort-fuse": ORT_FUSE_FIXED_S + ORT_FUSE_S_PER_PARAM * params,
        "ort-quantize": ORT_QUANTIZE_S_PER_PARAM * params,
        "ort-calibrate": ORT_CALIBRATION_PASSES * forward_s,
        "fp32-save": FP32_SAVE_S_PER_PARAM * params,
        "bnb-load": BNB_LOAD_S_PER_PARAM * params,
        "torch-quantize": TORCH_QUANTIZE_S_PER_PARAM * params,
    }
    return price[step]


def _prepare_s(path: str, params: int, forward_s: float) -> float:
    """Seconds of the path's declared ``prepare_steps``."""
    facts = _facts(path)
    return sum(_prepare_s_of(step, params, forward_s) for step in facts.prepare_steps) if facts is not None else 0.0


def cell_cost(cell: Cell, profile: str = "full") -> float:
    """Expected seconds of ``cell`` on the reference machine (see the module docstring)."""
    first, each, processes = cell_cost_parts(cell, profile)
    return first + (processes - 1) * each


def cell_cost_parts(cell: Cell, profile: str = "full") -> tuple[float, float, int]:
    """``cell_cost`` in its parts: the first process (with its artifacts process), each further
    timing-only process, and how many processes in all (the runner runs them in later rounds)."""
    if not _path_runs_on(cell.path, cell.device):
        return SKIP_COST_S, 0.0, 1
    prof = _profile(profile)
    spec = _spec(cell.model)
    factor = _path_factor(cell.path, cell.device) or 1.0
    fwd = _forward_s(cell.model, cell.device, cell.batch_size) * factor
    per_image = _forward_s(cell.model, cell.device, 1) * factor
    build = BUILD_S_PER_PARAM * spec.real_params
    if cell.device == "cuda":
        build += 4.0 * spec.real_params / H2D_BYTES_PER_S
    fidelity = prof.fidelity_images_for(spec) * per_image
    first = (
        CELL_OVERHEAD_S
        + build
        + _prepare_s(cell.path, spec.real_params, fwd)
        + _measure_s(fwd, prof.first_latency(None))
        + fidelity
    )
    if _caches_artifacts(cell.path):  # the artifacts are made in a process of their own first
        first += CELL_OVERHEAD_S + build
    # Batch sweeps (opt-in) are left out: they add alike to every cell of a run.
    return first, _repeat_s(cell.path, spec.real_params, fwd, build, prof), _processes(fwd, prof)


@functools.cache
def _caches_artifacts(path: str) -> bool:
    from kit.paths.base import caches_artifacts

    return caches_artifacts(path)


def _processes(forward_s: float, profile: Any) -> int:
    """The profile's processes for a cell of this forward time (``kit.run.repeats.processes_for``
    decides from the measured median; this predicts it)."""
    limit = profile.repeat_max_median_ms
    return profile.repeats if limit is None or forward_s * 1000 <= limit else 1


def _repeat_s(path: str, params: int, forward_s: float, build_s: float, profile: Any) -> float:
    """One timing-only process: the build, the prepare steps no cache saves, warm-up and timing."""
    facts = _facts(path)
    from kit.paths.base import CACHED_PREPARE_STEPS

    steps = [s for s in facts.prepare_steps if s not in CACHED_PREPARE_STEPS] if facts is not None else []
    prepare = sum(_prepare_s_of(step, params, forward_s) for step in steps)
    return CELL_OVERHEAD_S + build_s + prepare + _measure_s(forward_s, profile.timing_only_latency)


def reference_cost(model: str, profile: str = "full") -> float:
    """The once-per-shard FP32 CPU reference of ``model``: its first build (the seeded init, saved
    to the run's cache for every later process) plus the fidelity images."""
    prof = _profile(profile)
    spec = _spec(model)
    return (
        CELL_OVERHEAD_S
        + INIT_S_PER_PARAM * spec.real_params
        + prof.fidelity_images_for(spec) * _forward_s(model, "cpu", 1)
    )


# ----------------------------------------------------------------------------------- partition


@dataclass
class _Unit:
    indices: list[int]  # positions in the input list
    cost: float
    key: str  # tie-breaker: the first cell key (deterministic)


def _lpt(units: Sequence[_Unit], n: int) -> tuple[list[list[int]], list[float]]:
    bins: list[list[int]] = [[] for _ in range(n)]
    loads = [0.0] * n
    for unit in sorted(units, key=lambda u: (-u.cost, u.key)):
        # Least-loaded bin; ties to the lowest index, so the result never depends on dict order.
        target = min(range(n), key=lambda i: (loads[i], i))
        bins[target].extend(unit.indices)
        loads[target] += unit.cost
    return bins, loads


def _split_model(indices: list[int], costs: list[float], keys: list[str], ref: float, cap: float) -> list[_Unit]:
    """Cut one model's cells into the fewest pieces whose cost (each with its own reference) fits
    ``cap``; a single cell over ``cap`` stays a piece of its own."""
    total = sum(costs[i] for i in indices)
    pieces = max(1, min(len(indices), math.ceil((total + ref) / cap)))
    while True:
        order = sorted(indices, key=lambda i: (-costs[i], keys[i]))
        sub: list[list[int]] = [[] for _ in range(pieces)]
        load = [0.0] * pieces
        for i in order:
            j = min(range(pieces), key=lambda b: (load[b], b))
            sub[j].append(i)
            load[j] += costs[i]
        if pieces >= len(indices) or max(load) + ref <= cap:
            break
        pieces += 1
    return [_Unit(sorted(s), load[j] + ref, min(keys[i] for i in s)) for j, s in enumerate(sub) if s]


def _partition(cells: Sequence[Cell], n: int, profile: str) -> list[list[int]]:
    if not cells:
        return [[] for _ in range(n)]
    keys = [c.key() for c in cells]
    costs = [cell_cost(c, profile) for c in cells]
    by_model: dict[str, list[int]] = {}
    for i, c in enumerate(cells):
        by_model.setdefault(c.model, []).append(i)
    refs = {m: reference_cost(m, profile) for m in by_model}
    mean = (sum(costs) + sum(refs.values())) / n
    # Every cut from whole models down to single cells; each judged by its makespan with the
    # reference paid once per model per shard, as it will be.
    candidates: list[tuple[float, list[list[int]]]] = []
    alpha = 1.0
    while True:
        units: list[_Unit] = []
        for model in sorted(by_model):
            units.extend(_split_model(by_model[model], costs, keys, refs[model], alpha * mean))
        bins, _ = _lpt(units, n)
        makespan = max(
            sum(costs[i] for i in b) + sum(refs[m] for m in sorted({cells[i].model for i in b})) for b in bins
        )
        candidates.append((makespan, bins))
        if all(len(u.indices) == 1 for u in units) or len(candidates) >= MAX_CUTS:
            break
        alpha /= 2
    # The coarsest cut (fewest models split) whose makespan is within BALANCE_TARGET of the best.
    best = min(m for m, _ in candidates)
    return next(bins for m, bins in candidates if m <= best * BALANCE_TARGET)


def shard_cells(cells: Iterable[Cell], k: int, n: int, profile: str = "full") -> list[Cell]:
    """The cells of shard ``k`` of ``n`` (1-based), in input order; see the module docstring."""
    if n < 1 or not 1 <= k <= n:
        raise ValueError(f"shard {k}/{n}: K must be between 1 and N")
    cells = list(cells)
    bins = _partition(cells, n, profile)
    return [cells[i] for i in sorted(bins[k - 1])]


def shard_loads(cells: Iterable[Cell], n: int, profile: str = "full") -> list[float]:
    """Expected cost of each of the ``n`` shards (references included): for the bench and tests."""
    cells = list(cells)
    out = []
    for b in _partition(cells, n, profile):
        out.append(
            sum(cell_cost(cells[i], profile) for i in b)
            + sum(reference_cost(m, profile) for m in sorted({cells[i].model for i in b}))
        )
    return out


def plan_fingerprint(cells: Iterable[Cell], profile: str = "full") -> str:
    """Names the whole matrix a shard was cut from, so merge can tell shards of one plan apart."""
    text = "\n".join(sorted(c.key() for c in cells)) + f"\nprofile={profile}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


SHARD_MANIFEST = "shard.json"


def shard_manifest(
    all_cells: Sequence[Cell], k: int, n: int, shard: Sequence[Cell], profile: str = "full"
) -> dict[str, Any]:
    return {
        "kind": "qkit-shard",
        "shard": k,
        "of": n,
        "profile": profile,
        "plan": plan_fingerprint(all_cells, profile),
        "plan_cells": len(all_cells),
        "cells": [c.as_dict() for c in shard],
        "planned": [c.as_dict() for c in all_cells],  # the whole plan: merge reports what never came back
        "expected_cost_s": round(sum(cell_cost(c, profile) for c in shard), 3),
    }


def write_shard_manifest(
    out: Any, all_cells: Sequence[Cell], k: int, n: int, shard: Sequence[Cell], profile: str = "full"
) -> Any:
    """Write ``<out>/shard.json`` (outside ``cells/``, so it is not a result): lets ``qkit merge``
    report shards and cells that never came back."""
    from pathlib import Path

    from kit.documents import write_json

    return write_json(Path(out) / SHARD_MANIFEST, shard_manifest(all_cells, k, n, shard, profile))


def read_shard_manifest(file: Any) -> Any:
    """``shard.json`` read by the strict reader; raises `kit.documents.DocumentError` (one line)."""
    from kit.documents import read_json

    return read_json(file)
