"""What a claim's metric reads from the results: one cell's value per machine, paired metrics
(a path against the fp32 baseline on one machine) with their CIs, and the rows of an aggregate.

Conventions. Latency is our mean (the study "averaged" its iterations: the statistic the claim
states) with the 95% CI of the mean (mean ± 1.96·std/√n). Relative claims are recomputed on one
machine against ``torch-fp32`` on the same device, with the formulas and labels of
``kit.results.figures`` (speedup = ratio of means here; memory reduction = 1 - path / fp32 in one
memory phase). A memory claim is read in the phase it speaks of (``memory_phase``): the study's
"peak GPU memory" is the inference-phase peak, seed 004's "memory usage" of the model in use the
steady footprint; the verdict's convention names the phase. Aggregates use the rows and statistic
each claim's ``subject.how`` states, all cells from one machine.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kit.claims.load import Claim
from kit.claims.validate.index import ResultIndex, cell_name
from kit.claims.validate.machines import ANYWHERE, Machine
from kit.claims.validate.stats import Z95, statistic
from kit.claims.validate.values import Measured, Missing, dig, num, section
from kit.models.registry import get_model
from kit.results import figures

# Seeds whose memory figure is the footprint of the model in use (seed 004's table: "Memory Usage
# (MB)" of the original and the quantized model), not a peak during inference.
STEADY_MEMORY_SOURCES: tuple[str, ...] = ("004",)


def memory_phase(claim: Claim) -> str:
    """The memory phase a claim speaks of."""
    source = (claim.source_file or claim.id).rsplit("/", 1)[-1]
    return "steady" if source.startswith(STEADY_MEMORY_SOURCES) else figures.DEFAULT_MEMORY_PHASE


BASELINE_PATH = "torch-fp32"

# ===================================================================== single-doc metrics


def _latency(doc: dict[str, Any]) -> Measured | Missing:
    lat = section(doc, "latency")
    mean, std = num(lat.get("mean")), num(lat.get("std"))
    n = lat.get("iterations") if isinstance(lat.get("iterations"), int) else None
    if mean is None or mean <= 0:
        return Missing(f"{cell_name(doc)}: latency.mean missing or not positive")
    ci = None
    repeats = lat.get("repeats") if isinstance(lat.get("repeats"), dict) else None
    across = lat.get("mean_ci95")
    if repeats and isinstance(across, list) and len(across) == 2 and all(num(c) is not None for c in across):
        ci = (float(across[0]), float(across[1]))
        k = repeats.get("processes")
        convention = (
            f"statistic: mean (the claim's: the study averaged 1000 iterations), our mean over {k} fresh "
            f"processes ({n} timed iterations); 95% CI across processes: t-interval on the process means"
        )
    else:
        if std is not None and n and n >= 2:
            half = Z95 * std / math.sqrt(n)
            ci = (mean - half, mean + half)
        convention = (
            f"statistic: mean (the claim's: the study averaged 1000 iterations), our mean of {n} timed "
            "iterations of one process; 95% CI of the mean = mean ± 1.96·std/√n, within one process only "
            "(it does not include process-to-process variation)"
        )
    return Measured(mean, ci, num(lat.get("cv")), convention, (cell_name(doc),))


Extractor = Callable[[dict[str, Any]], Measured | Missing]


def _simple(getter: Callable[[dict[str, Any]], Any], what: str, convention: str) -> Extractor:
    def extract(doc: dict[str, Any]) -> Measured | Missing:
        value = num(getter(doc))
        if value is None:
            return Missing(f"{cell_name(doc)}: {what} not recorded")
        return Measured(value, None, None, convention, (cell_name(doc),))

    return extract


def _size_mib(doc: dict[str, Any]) -> float | None:
    size = num(dig(doc, "size", "bytes"))
    return size / 2**20 if size is not None else None


def _parameters(doc: dict[str, Any]) -> Any:
    info = section(doc, "model_info")
    return info.get("param_count", info.get("parameters"))


_throughput = _simple(
    lambda d: dig(d, "throughput", "samples_per_s"),
    "throughput.samples_per_s",
    "our throughput.samples_per_s (its method is recorded in the result)",
)


def _peak(phase: str) -> Extractor:
    def extract(doc: dict[str, Any]) -> Measured | Missing:
        reading = figures.memory(doc, phase)
        if isinstance(reading, str):
            return Missing(f"{cell_name(doc)}: memory phase {phase}: {reading}")
        return Measured(
            reading.mb, None, None, f"{reading.describe()}, MiB at the cell's batch size", (cell_name(doc),)
        )

    return extract


_size = _simple(_size_mib, "size.bytes", "our serialized size (size.bytes / 2^20, MiB; the study's 'MB' is ambiguous)")
_params = _simple(
    _parameters,
    "model_info.param_count",
    "parameters of the model as built (model_info.param_count): a property of the model, which "
    "the study repeats on every precision's row",
)


def _arch_value(doc: dict[str, Any], key: str) -> Any:
    info = section(doc, "model_info")
    if key in info:
        return info[key]
    config = section(info, "config")
    if key in config:
        return config[key]
    try:
        spec = get_model(doc["cell"]["model"])
    except KeyError:  # a model this kit does not know (an old or foreign result): no registry copy
        return None
    return spec.config.get(key)


def _arch(key: str) -> Extractor:
    return _simple(
        lambda d: _arch_value(d, key),
        key,
        f"{key} of the model as run (result model_info, else the kit registry's copy of the "
        "checkpoint config.json, which is checked against the real config when weights load)",
    )


SINGLE: dict[str, Extractor] = {
    "latency_ms": _latency,
    "throughput_sps": _throughput,
    "peak_memory_mb": _peak(figures.DEFAULT_MEMORY_PHASE),
    "model_size_mb": _size,
    "parameters": _params,
    **{k: _arch(k) for k in ("image_size", "patch_size", "hidden_size", "num_attention_heads", "num_hidden_layers")},
}
# Quantities that do not depend on the machine: looked up on any device, compared as "anywhere".
MACHINE_FREE = {
    "model_size_mb",
    "parameters",
    "image_size",
    "patch_size",
    "hidden_size",
    "num_attention_heads",
    "num_hidden_layers",
}
# A model property: read from the fp32 result whatever precision's row repeats it.
MODEL_PROPERTY = {"parameters", "image_size", "patch_size", "hidden_size", "num_attention_heads", "num_hidden_layers"}
ACCURACY_METRICS = {"top1_accuracy_pct": "top1", "top5_accuracy_pct": "top5"}
# Per-cell metrics read in a memory phase, and every metric (pairs included) that is a memory figure.
PHASED = {"peak_memory_mb"}
MEMORY_METRICS = {"peak_memory_mb", "memory_reduction_pct", "memory_reduction_fraction"}


def _accuracy(index: ResultIndex, model: str, path: str, key: str) -> Measured | Missing:
    docs = index.accuracy.get((model, path), [])
    ok = [d for d in docs if d.get("status") == "ok"]
    if not ok:
        if docs:
            return Missing(f"accuracy of {model} {path}: {docs[-1].get('status')}: {docs[-1].get('reason')}")
        return Missing(
            f"no accuracy result for {model} {path}: run `qkit accuracy --model {model} --weights DIR "
            "--dataset DIR` (needs the checkpoint and the labelled images)"
        )
    doc = max(ok, key=lambda d: str(d.get("finished_utc")))
    ci = doc.get(f"{key}_ci95")
    ci95 = None
    if isinstance(ci, list) and len(ci) == 2 and all(num(c) is not None for c in ci):
        ci95 = (float(ci[0]), float(ci[1]))
    return Measured(
        float(doc[f"{key}_pct"]),
        ci95,
        None,
        f"{key} accuracy over {doc['images']} images of {dig(doc, 'dataset', 'dir')} ({doc['device']})",
        (f"accuracy:{model}/{path}/{doc['device']}",),
    )


# ======================================================================== paired metrics


@dataclass(frozen=True)
class Pair:
    """A metric computed from a path's value and the fp32 baseline's, on one machine."""

    source: str  # the per-cell metric both sides are read as
    combine: Callable[[float, float], float]
    convention: str
    # Accuracy of two paths comes from the same images: a paired difference, whose uncertainty
    # the two unpaired intervals would overstate many times, so no CI is derived for it (and a
    # difference, unlike a ratio, is defined at 0).
    paired_difference: bool = False


def _reduction(b: float, p: float) -> float:
    value = figures.reduction_pct(p, b)
    assert value is not None
    return value


PAIRS: dict[str, Pair] = {
    "speedup": Pair("latency_ms", lambda b, p: b / p, f"{figures.speedup_label('mean')}, one machine"),
    "inference_improvement_pct": Pair(
        "latency_ms", _reduction, "100·(1 - path mean latency / fp32 mean latency), ratio of means, one machine"
    ),
    "memory_reduction_pct": Pair(
        "peak_memory_mb", _reduction, "100·(1 - path / fp32) in one memory phase, one machine"
    ),
    "memory_reduction_fraction": Pair(
        "peak_memory_mb",
        lambda b, p: _reduction(b, p) / 100,
        "1 - path / fp32 in one memory phase, one machine, as a fraction",
    ),
    "throughput_change_pct": Pair(
        "throughput_sps",
        lambda b, p: 100 * (p / b - 1),
        f"100·(path throughput / fp32 throughput - 1), {figures.throughput_label('median')}, one machine",
    ),
    "size_reduction_pct": Pair("model_size_mb", _reduction, "100·(1 - path serialized size / fp32 serialized size)"),
    "top1_accuracy_delta_pp": Pair("top1_accuracy_pct", lambda b, p: p - b, "path top-1 - fp32 top-1 (pp)", True),
    "top5_accuracy_delta_pp": Pair("top5_accuracy_pct", lambda b, p: p - b, "path top-5 - fp32 top-5 (pp)", True),
    "top1_accuracy_drop_pp": Pair("top1_accuracy_pct", lambda b, p: b - p, "fp32 top-1 - path top-1 (pp)", True),
    "top5_accuracy_drop_pp": Pair("top5_accuracy_pct", lambda b, p: b - p, "fp32 top-5 - path top-5 (pp)", True),
}


def pair_ci(pair: Pair, base: Measured, path: Measured) -> tuple[float, float] | None:
    """First-order error propagation: the two sides' CI half-widths combined in quadrature
    (independent measurements), around the combined value."""
    if pair.paired_difference or (base.ci95 is None and path.ci95 is None):
        return None
    b, p = float(base.value), float(path.value)
    hb = (max(base.ci95) - min(base.ci95)) / 2 if base.ci95 else 0.0
    hp = (max(path.ci95) - min(path.ci95)) / 2 if path.ci95 else 0.0
    if b - hb <= 0 or p - hp <= 0:
        return None
    value = pair.combine(b, p)
    half = math.hypot(pair.combine(b + hb, p) - value, pair.combine(b, p + hp) - value)
    return (value - half, value + half)


def _combine(pair: Pair, base: Measured, path: Measured) -> Measured | Missing:
    if not pair.paired_difference and (base.value == 0 or path.value == 0):
        return Missing(f"a {pair.source} of 0 cannot form a ratio ({', '.join(base.cells + path.cells)})")
    cv = max((c for c in (base.cv, path.cv) if c is not None), default=None)
    return Measured(
        pair.combine(base.value, path.value),
        pair_ci(pair, base, path),
        cv,
        f"{pair.convention}; {base.convention}",
        base.cells + path.cells,
    )


# ====================================================================== cell measurement

Found = dict[Machine, Measured] | Missing


def measure_single(
    index: ResultIndex,
    metric: str,
    model: str,
    path: str,
    device: str | None,
    batch: int | None,
    phase: str = figures.DEFAULT_MEMORY_PHASE,
) -> Found:
    """One metric of one cell, per machine that measured it (a memory metric in ``phase``)."""
    if metric in ACCURACY_METRICS:
        m = _accuracy(index, model, path, ACCURACY_METRICS[metric])
        return m if isinstance(m, Missing) else {ANYWHERE: m}
    free = metric in MACHINE_FREE
    docs = index.ok_by_machine(model, path, None if free else device, None if free else batch)
    if isinstance(docs, Missing):
        return docs
    found: dict[Machine, Measured] = {}
    problems = []
    extractor = _peak(phase) if metric in PHASED else SINGLE[metric]
    for machine, doc in docs.items():
        m = extractor(doc)
        if isinstance(m, Missing):
            problems.append(m.reason)
        else:
            found[ANYWHERE if free else machine] = m
    return found or Missing("; ".join(problems[:2]))


def measure_pair(
    index: ResultIndex,
    metric: str,
    model: str,
    path: str,
    device: str | None,
    batch: int | None,
    phase: str = figures.DEFAULT_MEMORY_PHASE,
) -> Found:
    pair = PAIRS[metric]
    base = measure_single(index, pair.source, model, BASELINE_PATH, device, batch, phase)
    if isinstance(base, Missing):
        return Missing(f"baseline: {base.reason}")
    other = measure_single(index, pair.source, model, path, device, batch, phase)
    if isinstance(other, Missing):
        return other
    shared = set(base) & set(other)
    if not shared:
        return Missing(
            f"{BASELINE_PATH} and {path} of {model} were measured on different machines "
            f"({', '.join(m.label() for m in base)} vs {', '.join(m.label() for m in other)}); "
            "a ratio needs one machine"
        )
    found: dict[Machine, Measured] = {}
    problem: Missing | None = None
    for machine in sorted(shared):
        m = _combine(pair, base[machine], other[machine])
        if isinstance(m, Missing):
            problem = problem or m  # that machine gives no value; the others still do
        else:
            found[machine] = m
    return found or problem or Missing("no value")


def measure(
    index: ResultIndex,
    metric: str,
    model: str,
    path: str,
    device: str | None,
    batch: int | None,
    phase: str = figures.DEFAULT_MEMORY_PHASE,
) -> Found:
    if metric in PAIRS:
        return measure_pair(index, metric, model, path, device, batch, phase)
    if metric in SINGLE or metric in ACCURACY_METRICS:
        if metric in MODEL_PROPERTY:
            found = measure_single(index, metric, model, BASELINE_PATH, device, batch)
            if not isinstance(found, Missing):
                return found
        return measure_single(index, metric, model, path, device, batch, phase)
    return Missing(f"qkit has no rule to measure {metric!r}")


def needs(metric: str, model: str, path: str) -> list[tuple[str, str]]:
    """The (model, path) cells a metric of one row is computed from."""
    return [(model, BASELINE_PATH), (model, path)] if metric in PAIRS else [(model, path)]


# ============================================================================ aggregate rows

Rows = dict[tuple[str, str], Measured]


def stat_measured(kind: str, params: dict[str, Any], rows: Rows) -> Measured:
    """A statistic over the rows, with a CI where the statistic is monotone and every row has one."""
    stat, monotone = statistic(kind, params)
    values = [m.value for m in rows.values()]
    ci = None
    if monotone and all(m.ci95 for m in rows.values()):
        ci = (stat([min(m.ci95) for m in rows.values()]), stat([max(m.ci95) for m in rows.values()]))  # type: ignore[arg-type]
    cvs = [m.cv for m in rows.values() if m.cv is not None]
    return Measured(
        stat(values),
        ci,
        max(cvs) if cvs else None,
        _rows_convention(rows),
        tuple(c for m in rows.values() for c in m.cells),
    )


def _rows_convention(rows: Rows) -> str:
    first = next(iter(rows.values()))
    return f"{len(rows)} rows; each: {first.convention}"


def measure_rows(index: ResultIndex, claim: Claim) -> dict[Machine, Rows] | Missing:
    """Every (model, path) row an aggregate needs, from one machine that measured all of them."""
    over = claim.subject.over
    assert over is not None
    device = over.device or claim.measure_device
    per_row: dict[tuple[str, str], dict[Machine, Measured]] = {}
    missing = []
    for model in over.models:
        for path in over.kit_paths:
            found = measure(index, over.metric, model, path, device, claim.batch_size, memory_phase(claim))
            if isinstance(found, Missing):
                missing.append(found.reason)
            else:
                per_row[(model, path)] = found
    total = len(over.models) * len(over.kit_paths)
    if missing:
        shown = "; ".join(missing[:3]) + (f"; ... (+{len(missing) - 3} more)" if len(missing) > 3 else "")
        what = f"{len(missing)} of the {total} rows this {claim.subject.aggregate} needs"
        return Missing(f"{what} are not measured: {shown}")
    machines = set.intersection(*(set(found) for found in per_row.values()))
    if not machines:
        return Missing(f"no single machine measured all {total} rows; an aggregate is computed on one machine")
    return {machine: {row: found[machine] for row, found in per_row.items()} for machine in machines}
