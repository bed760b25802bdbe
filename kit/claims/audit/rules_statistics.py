"""Statistics: every quoted mean, median, std, percentile, range, bound, top list and leader,
recomputed from the per-model rows it summarises.

Rows: for each (model, path) of the aggregate's ``over``, the published cell values of
``over.metric`` from the same study (same hardware), preferring the aggregate's own file; when
two tables print the same cell, their rounding intervals are intersected (or joined, if they
disagree: that disagreement is ``consistency.cell_values``' finding, not this rule's).

Conventions: mean and median over the rows as listed (no weighting); std with the ddof the
claim states, and the other ddof reported when only it matches (population = ddof 0, sample =
ddof 1); percentiles by numpy's nine methods plus nearest-rank, the claim's stated method first;
every statistic is an interval: mean/median/min/max/percentiles are monotone in each row so their
bounds come from the rows' bounds, std moves by at most the largest row half-width (std is
1-Lipschitz in the max norm).
"""

from __future__ import annotations

import itertools
import math
import re
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from kit.claims.audit.claim import AuditClaim, Study, is_baseline
from kit.claims.audit.findings import Hit
from kit.claims.audit.numbers import Iv, fmt, gap_severity
from kit.claims.audit.registry import rule

PERCENTILE_METHODS: tuple[str, ...] = (
    "linear",
    "lower",
    "higher",
    "nearest",
    "midpoint",
    "inverted_cdf",
    "averaged_inverted_cdf",
    "closest_observation",
    "interpolated_inverted_cdf",
    "hazen",
    "weibull",
    "median_unbiased",
    "normal_unbiased",
)


@dataclass(frozen=True)
class Row:
    model: str
    path: str
    iv: Iv
    claims: tuple[AuditClaim, ...]


def over_spec(c: AuditClaim) -> tuple[str, list[str], list[str]] | None:
    """(metric, kit paths, models) of an aggregate, whatever spelling the claim set uses."""
    o: Mapping = c.over
    metric = o.get("metric")
    paths = o.get("kit_path", o.get("kit_paths"))
    if isinstance(paths, str):
        paths = [paths]
    models = o.get("models")
    if isinstance(models, str):
        models = [models]
    if not isinstance(metric, str) or not isinstance(paths, list) or not isinstance(models, list):
        return None
    return metric, [p for p in paths if isinstance(p, str)], [m for m in models if isinstance(m, str)]


def rows_for(study: Study, agg: AuditClaim) -> tuple[list[Row], list[str]]:
    """The rows an aggregate speaks of, and the (model, path) pairs with no published value."""
    spec = over_spec(agg)
    if spec is None:
        return [], ["<unreadable over>"]
    metric, paths, models = spec
    source_metric, transform = _alias(study, metric)
    rows: list[Row] = []
    missing: list[str] = []
    for model in models:
        for path in paths:
            cands = [c for c in study.cells(source_metric, model=model, kit_path=path) if study.same_group(c, agg)]
            if not cands:
                missing.append(f"{model}/{path}")
                continue
            own = [c for c in cands if c.source_file == agg.source_file]
            use = [*own, *(c for c in cands if c not in own)]
            iv = merge(use)
            precise = derived(study, source_metric, model, path, agg)
            if precise is not None and iv.meets(precise):
                iv = Iv(max(iv.lo, precise.lo), min(iv.hi, precise.hi))
            t = transform(iv)
            rows.append(Row(model, path, Iv(min(t.lo, t.hi), max(t.lo, t.hi)), tuple(use)))
    return rows, missing


def merge(claims: Sequence[AuditClaim]) -> Iv:
    """One interval for copies of one value: their intersection while they agree, else their hull
    (copies that disagree are ``consistency.cell_values``' finding; the hull keeps this rule lenient)."""
    iv = claims[0].iv
    for c in claims[1:]:
        iv = Iv(max(iv.lo, c.iv.lo), min(iv.hi, c.iv.hi)) if iv.meets(c.iv) else iv.hull(c.iv)
    return iv


_DERIVED = {
    "speedup": ("latency_ms", lambda b, p: b / p, 1.0),
    "memory_reduction_pct": ("peak_memory_mb", lambda b, p: (1 - p / b) * 100.0, 0.0),
}


def derived(study: Study, metric: str, model: str, path: str, near: AuditClaim) -> Iv | None:
    """A relative metric recomputed from the printed inputs it is derived from (FP32 and path
    latencies for a speedup, peaks for a reduction): usually tighter than its own 2-decimal print,
    so a mean of sixteen speedups is known to ~0.001 rather than +/-0.005."""
    if metric not in _DERIVED:
        return None
    base_metric, fn, at_baseline = _DERIVED[metric]
    if path in ("torch-fp32", "ort-fp32"):
        return Iv.point(at_baseline)
    bases = [c for c in study.cells(base_metric, model=model, kit_path="torch-fp32") if study.same_group(c, near)]
    paths = [c for c in study.cells(base_metric, model=model, kit_path=path) if study.same_group(c, near)]
    if not bases or not paths:
        return None
    try:
        return fn(merge(bases), merge(paths))
    except ZeroDivisionError:
        return None


def _alias(study: Study, metric: str) -> tuple[str, Callable[[Iv], Iv]]:
    """Aggregates may be stated in a form the rows are not: a fraction of a percentage
    (0.658 for 65.8%), an accuracy drop of a printed delta (drop = -delta)."""
    if study.cells(metric):
        return metric, lambda iv: iv
    if metric.endswith("_fraction"):
        pct = metric[: -len("_fraction")] + "_pct"
        if study.cells(pct):
            return pct, lambda iv: iv * 0.01
    if metric.endswith("_drop_pp"):
        delta = metric[: -len("_drop_pp")] + "_delta_pp"
        if study.cells(delta):
            return delta, lambda iv: iv * -1.0
    return metric, lambda iv: iv


def _bounds(rows: Sequence[Row], fn) -> Iv:
    lo = float(fn(np.array([r.iv.lo for r in rows])))
    hi = float(fn(np.array([r.iv.hi for r in rows])))
    return Iv(min(lo, hi), max(lo, hi))


def _std(rows: Sequence[Row], ddof: int) -> Iv:
    mids = np.array([r.iv.mid for r in rows])
    if len(mids) <= ddof:
        return Iv(math.nan, math.nan)
    s = float(np.std(mids, ddof=ddof))
    h = max(r.iv.half for r in rows)
    return Iv(max(0.0, s - h), s + h)


def _pct(rows: Sequence[Row], q: float, method: str) -> Iv:
    if method == "nearest_rank":

        def fn(a: np.ndarray) -> float:
            k = max(1, math.ceil(q / 100.0 * len(a)))
            return float(np.sort(a)[k - 1])
    else:

        def fn(a: np.ndarray) -> float:
            # numpy types `method` as a Literal of its names; ours is one of PERCENTILE_METHODS
            return float(np.percentile(a, q, method=method))  # type: ignore[call-overload]

    return _bounds(rows, fn)


def _rows_text(rows: Sequence[Row], limit: int = 20) -> str:
    parts = [f"{r.model}:{fmt(r.iv.mid)}" for r in sorted(rows, key=lambda r: r.iv.mid)]
    if len(parts) > limit:
        parts = [*parts[:limit], f"... ({len(rows) - limit} more)"]
    return ", ".join(parts)


def _claims_of(agg: AuditClaim, rows: Sequence[Row], limit: int = 12) -> list[AuditClaim]:
    out = [agg]
    for r in rows[:limit]:
        out.append(r.claims[0])
    return out


def _describe(agg: AuditClaim) -> str:
    spec = over_spec(agg)
    if spec is None:
        return agg.metric
    metric, paths, models = spec
    return f"{agg.aggregate} of {metric} [{'+'.join(paths)}] over {len(models)} models"


def _value_iv(agg: AuditClaim) -> Iv | None:
    return agg.iv if agg.is_number else None


@rule(
    "stats.central",
    family="statistics",
    severity="error",
    convention="arithmetic mean and median (mean of the two middle rows for an even count) of the "
    "published per-model values; min and max; intervals from printed rounding",
)
def central(study: Study) -> Iterator[Hit]:
    """Quoted means, medians, minima and maxima recomputed from the rows they summarise."""
    fns = {"mean": np.mean, "median": np.median, "min": np.min, "max": np.max}
    for agg in study.claims:
        if agg.kind != "aggregate" or agg.aggregate not in fns or not agg.is_number:
            continue
        rows, missing = rows_for(study, agg)
        if not rows or missing:
            continue
        computed = _bounds(rows, fns[agg.aggregate])
        claimed = agg.iv
        if claimed.meets(computed):
            continue
        yield Hit(
            f"{_describe(agg)}: published {fmt(agg.num)}, the rows give {fmt(computed.mid)}",
            f"{agg.aggregate}({len(rows)} rows) = {computed}; published {claimed}; rows: {_rows_text(rows)}",
            _claims_of(agg, rows),
            severity=gap_severity(claimed, computed),
        )


@rule(
    "stats.std",
    family="statistics",
    severity="error",
    convention="standard deviation with the ddof the claim states (0 = population, 1 = sample); "
    "accepted if either ddof matches (the study rarely says); +/- the largest row half-width",
)
def std(study: Study) -> Iterator[Hit]:
    """Quoted standard deviations recomputed (population and sample) from the rows."""
    for agg in study.claims:
        if agg.kind != "aggregate" or agg.aggregate != "std" or not agg.is_number:
            continue
        rows, missing = rows_for(study, agg)
        if len(rows) < 2 or missing:
            continue
        pop, samp = _std(rows, 0), _std(rows, 1)
        claimed = agg.iv
        if claimed.meets(pop) or claimed.meets(samp):
            continue
        nearest = min((pop, samp), key=claimed.gap)
        yield Hit(
            f"{_describe(agg)}: published std {fmt(agg.num)}, the rows give {fmt(pop.mid)} "
            f"(population) / {fmt(samp.mid)} (sample)",
            f"population std = {pop}, sample std = {samp}; published {claimed}; rows: {_rows_text(rows)}",
            _claims_of(agg, rows),
            severity=gap_severity(claimed, nearest),
        )


def _params(agg: AuditClaim) -> Mapping:
    p = agg.subject.get("params")
    return p if isinstance(p, Mapping) else {}


@rule(
    "stats.percentile",
    family="statistics",
    severity="error",
    convention="percentile by numpy's 13 methods plus nearest-rank; the stated method first; info "
    "when only another method reproduces the number (numpy/pandas default is linear)",
)
def percentile(study: Study) -> Iterator[Hit]:
    """Quoted percentiles recomputed from the rows under every common percentile definition."""
    for agg in study.claims:
        if agg.kind != "aggregate" or agg.aggregate != "percentile" or not agg.is_number:
            continue
        q = _params(agg).get("percentile")
        if not isinstance(q, (int, float)) or not 0 <= q <= 100:
            continue
        rows, missing = rows_for(study, agg)
        if not rows or missing:
            continue
        stated = _params(agg).get("method") or "linear"
        claimed = agg.iv
        results = {m: _pct(rows, float(q), m) for m in (*PERCENTILE_METHODS, "nearest_rank")}
        matching = [m for m, r in results.items() if claimed.meets(r)]
        lin = results["linear"]
        if stated in matching and "linear" in matching:
            continue
        if not matching:
            nearest = min(results.values(), key=claimed.gap)
            yield Hit(
                f"{_describe(agg)}: published p{fmt(q)} {fmt(agg.num)} matches no percentile "
                f"definition (linear gives {fmt(lin.mid)})",
                "; ".join(f"{m} {fmt(r.mid)}" for m, r in results.items())
                + f"; published {claimed}; rows: {_rows_text(rows)}",
                _claims_of(agg, rows),
                severity=gap_severity(claimed, nearest),
            )
            continue
        yield Hit(
            f"{_describe(agg)}: p{fmt(q)} {fmt(agg.num)} is reproduced only by the "
            f"{'/'.join(matching)} method(s); numpy/pandas' default (linear) gives {fmt(lin.mid)}",
            f"linear {lin}; "
            + "; ".join(f"{m} {fmt(results[m].mid)}" for m in matching)
            + f"; published {claimed} (stated method: {stated}); rows: {_rows_text(rows)}",
            _claims_of(agg, rows),
            severity="info",
        )


def _range_ends(agg: AuditClaim) -> tuple[Iv, Iv] | None:
    v = agg.value
    if not (isinstance(v, list) and len(v) == 2 and all(isinstance(x, (int, float)) for x in v)):
        return None
    return agg.iv_of(float(v[0])), agg.iv_of(float(v[1]))


@rule(
    "stats.range",
    family="statistics",
    severity="error",
    convention="a quoted range [a, b] must equal [min, max] of the rows; each end compared on its own printed rounding",
)
def range_(study: Study) -> Iterator[Hit]:
    """Quoted ranges (min to max) recomputed from the rows."""
    for agg in study.claims:
        if agg.kind != "aggregate" or agg.aggregate != "range":
            continue
        ends = _range_ends(agg)
        if ends is None:
            continue
        rows, missing = rows_for(study, agg)
        if not rows or missing:
            continue
        lo_c, hi_c = _bounds(rows, np.min), _bounds(rows, np.max)
        bad = []
        if not ends[0].meets(lo_c):
            low_row = min(rows, key=lambda r: r.iv.mid)
            bad.append((ends[0], lo_c, f"low end {fmt(ends[0].mid)} vs min {fmt(lo_c.mid)} ({low_row.model})"))
        if not ends[1].meets(hi_c):
            high_row = max(rows, key=lambda r: r.iv.mid)
            bad.append((ends[1], hi_c, f"high end {fmt(ends[1].mid)} vs max {fmt(hi_c.mid)} ({high_row.model})"))
        if not bad:
            continue
        sev = "error" if any(gap_severity(a, b) == "error" for a, b, _ in bad) else "warning"
        yield Hit(
            f"{_describe(agg)}: published range {fmt(ends[0].mid)}-{fmt(ends[1].mid)}, the rows span "
            f"{fmt(lo_c.mid)}-{fmt(hi_c.mid)}",
            "; ".join(t for _, _, t in bad) + f"; rows: {_rows_text(rows)}",
            _claims_of(agg, rows),
            severity=sev,
        )


@rule(
    "stats.bounds",
    family="statistics",
    severity="error",
    convention="'at least a', 'at most b': every row must satisfy the bound as stated ('2x+' is >= 2.00, "
    "'Sub-4ms' < 4.00: a threshold's own rounding is no tolerance); 'all within [a, b]': the band's ends "
    "are rounded figures ('66-75%' admits a row that prints as 66); rows at the precision the document "
    "prints them; one finding per statement, listing every place it is printed",
)
def bounds(study: Study) -> Iterator[Hit]:
    """Claims that every row lies within a band or above/below a bound ("70-75% for all models")."""
    groups: dict[tuple[str, str, tuple[str, ...]], list[tuple[AuditClaim, list[Row], list[Row], list[str]]]] = {}
    for agg in study.claims:
        if agg.kind != "aggregate" or agg.aggregate not in ("all_within", "at_least", "at_most"):
            continue
        if not printed_in_text(agg):
            continue  # a verbal claim ("universal benefits"): stats.words_vs_numbers reads it
        if agg.aggregate == "all_within":
            ends = _range_ends(agg)
            if ends is None:
                continue
            # a band's ends are rounded figures ('66-75%' in whole percent): a row that prints as 66 is in it
            lo, hi = ends[0].lo, ends[1].hi
            label = f"within {fmt(ends[0].mid)}-{fmt(ends[1].mid)}"
        elif agg.is_number:
            lo, hi = (agg.num, math.inf) if agg.aggregate == "at_least" else (-math.inf, agg.num)
            label = f"{'>=' if agg.aggregate == 'at_least' else '<='} {fmt(agg.num)}"
        else:
            continue
        rows, missing = rows_for(study, agg)
        if not rows:
            continue
        out = [r for r in rows if r.iv.hi < lo or r.iv.lo > hi]
        if not out:
            continue
        key = (_describe(agg), label, tuple(sorted(f"{r.model}/{r.path}" for r in out)))
        groups.setdefault(key, []).append((agg, rows, out, missing))
    for (desc, label, _k), items in groups.items():
        agg, rows, out, missing = items[0]
        lo, hi = _bound_ends(agg)
        worst = max(out, key=lambda r: max(lo - r.iv.hi, r.iv.lo - hi))
        dist = max(lo - worst.iv.hi, worst.iv.lo - hi)
        scale = max(abs(lo) if math.isfinite(lo) else 0, abs(hi) if math.isfinite(hi) else 0, 1e-9)
        sev = "error" if dist / scale > 0.02 else "warning"
        near = [r for r in out if max(lo - r.iv.mid, r.iv.mid - hi) <= 0.01 * scale]
        near_txt = (
            " ("
            + ", ".join(
                f"{r.model} {_printed(r)} misses by {fmt(max(lo - r.claims[0].num, r.claims[0].num - hi))}"
                for r in near
            )
            + ")"
            if near
            else ""
        )
        meet = len(rows) - len(out)
        places = "; ".join(f"{a.id}: '{a.text[:90]}'" for a, *_ in items)
        yield Hit(
            f"{desc}: claimed {label} for all, but {len(out)} of {len(rows)} rows are not, so only {meet} of "
            f"{len(rows)} meet it (e.g. {worst.model} {worst.path} {_printed(worst)}){near_txt}"
            + (f"; stated in {len(items)} places" if len(items) > 1 else ""),
            "outside (as printed): "
            + ", ".join(f"{r.model}/{r.path}={_printed(r)}" for r in out)
            + (f"; no value for {', '.join(missing)}" if missing else "")
            + f"; stated: {places}",
            [*(a for a, *_ in items), *(r.claims[0] for r in out[:12])],
            severity=sev,
        )


def _printed(r: Row) -> str:
    """A row's value as the document prints it (its first copy's figure)."""
    c = r.claims[0]
    return fmt(c.num) if c.is_number else fmt(r.iv.mid)


def _bound_ends(agg: AuditClaim) -> tuple[float, float]:
    if agg.aggregate == "all_within":
        ends = _range_ends(agg)
        if ends is not None:
            return ends[0].lo, ends[1].hi
    return (agg.num, math.inf) if agg.aggregate == "at_least" else (-math.inf, agg.num)


def _ranked_claim_rows(study: Study, agg: AuditClaim) -> tuple[list[Row], dict[str, Row]] | None:
    rows, missing = rows_for(study, agg)
    if not rows or missing:
        return None
    best: dict[str, Row] = {}
    for r in rows:  # a model's best row across the paths in `over`
        if r.model not in best or r.iv.mid > best[r.model].iv.mid:
            best[r.model] = r
    return rows, best


@rule(
    "stats.ranking",
    family="statistics",
    severity="error",
    convention="a top list must hold the k highest rows (in order, unless the claim is compared as a "
    "set), and a leader the highest; ties within printed rounding are not defects",
)
def ranking(study: Study) -> Iterator[Hit]:
    """Top-k lists and category leaders against the ranking of the rows they are drawn from."""
    for agg in study.claims:
        if agg.kind != "aggregate" or agg.aggregate not in ("top", "leader"):
            continue
        got = _ranked_claim_rows(study, agg)
        if got is None:
            continue
        _rows, best = got
        listed = [agg.value] if agg.aggregate == "leader" else agg.value
        if not isinstance(listed, list) or not all(isinstance(x, str) for x in listed):
            continue
        unknown = [m for m in listed if m not in best]
        if unknown:
            continue
        problems = []
        others = [r for m, r in best.items() if m not in listed]
        for m in listed:
            beaten = [o for o in others if o.iv.lo > best[m].iv.hi]
            if beaten:
                o = max(beaten, key=lambda r: r.iv.mid)
                problems.append(f"{m} ({fmt(best[m].iv.mid)}) is listed but {o.model} ({fmt(o.iv.mid)}) is not")
        # order matters only where the claim ranks (docs/claims-format.md: a top list the study
        # prints with tied figures is "compared as a set")
        as_set = "as a set" in agg.how.lower()
        for a, b in [] if as_set else itertools.pairwise(listed):
            if best[b].iv.lo > best[a].iv.hi:
                problems.append(f"{a} ({fmt(best[a].iv.mid)}) is ranked above {b} ({fmt(best[b].iv.mid)})")
        if not problems:
            continue
        # Order slips inside a list whose members are right are minor; a wrong member is not.
        sev = "error" if any("is listed but" in p for p in problems) else "warning"
        yield Hit(
            f"{_describe(agg)}: {problems[0]}",
            "; ".join(problems)
            + "; ranking: "
            + ", ".join(f"{r.model}:{fmt(r.iv.mid)}" for r in sorted(best.values(), key=lambda r: -r.iv.mid)),
            [agg, *(best[m].claims[0] for m in listed if m in best)],
            severity=sev,
        )


RELATIVE_METRICS = ("speedup", "memory_reduction_pct", "inference_improvement_pct")


def _pooled_by_label(study: Study, agg: AuditClaim, n_rows: int) -> bool:
    """Whether the statement itself counts its pooled rows under one method's label ('Bitsandbytes
    Int8 Success: 32.0 models, 0.23x avg speedup'): the pooling is that label's, one root cause."""
    return any(
        c.metric == "method_row_count" and c.is_number and int(c.num) == n_rows and c.text.strip() == agg.text.strip()
        for c in study.claims
        if c.source_file == agg.source_file and c.section == agg.section
    )


@rule(
    "stats.mixed_paths",
    family="statistics",
    severity="warning",
    convention="an average of a relative metric (speedup, reduction) must be over one precision; "
    "pooling FP16 with INT8/NF4 rows (or the FP32 baseline's 1.0) describes no configuration",
)
def mixed_paths(study: Study) -> Iterator[Hit]:
    """Averages that pool different precisions into one "avg speedup"."""
    grouped: dict[tuple[str, str, tuple[str, ...]], list[tuple[AuditClaim, list[Row]]]] = {}
    for agg in study.claims:
        if agg.kind != "aggregate" or agg.aggregate not in ("mean", "median"):
            continue
        spec = over_spec(agg)
        if spec is None:
            continue
        metric, paths, models = spec
        if metric not in RELATIVE_METRICS or len(paths) < 2:
            continue
        if _pooled_by_label(study, agg, len(paths) * len(models)):
            continue  # one line counts the pooled rows under one method's label: method.row_label's finding
        rows, _ = rows_for(study, agg)
        key = (agg.source_file, agg.section, tuple(paths))
        grouped.setdefault(key, []).append((agg, rows))
    for (src, section, pooled), items in sorted(grouped.items()):
        parts = []
        for agg, rows in items:
            per_path: dict[str, list[float]] = {}
            for r in rows:
                per_path.setdefault(r.path, []).append(r.iv.mid)
            split = ", ".join(f"{p} {fmt(float(np.mean(v)))}" for p, v in per_path.items())
            parts.append(f"{agg.id} = {fmt(agg.num) if agg.is_number else agg.value} ({split})")
        first = items[0][0]
        yield Hit(
            f"{src} / {section}: {len(items)} '{first.aggregate}' figure(s) of {first.over.get('metric')} "
            f"pool {len(pooled)} precisions ({', '.join(pooled)}), so none is the {first.over.get('metric')} "
            "of any configuration",
            "published vs per-precision means: " + "; ".join(parts),
            [agg for agg, _rows in items],
        )


@rule(
    "stats.baseline_in_aggregate",
    family="statistics",
    severity="warning",
    convention="a baseline row (FP32 speedup 1.0, reduction 0) inside an aggregate of a relative metric "
    "dilutes it; reported when the FP32 path is among those pooled",
)
def baseline_in_aggregate(study: Study) -> Iterator[Hit]:
    """Aggregates of speedup/reduction that include the FP32 baseline's trivial 1.0 / 0 rows."""
    for agg in study.claims:
        if agg.kind != "aggregate" or agg.aggregate not in ("mean", "median", "std"):
            continue
        spec = over_spec(agg)
        if spec is None or spec[0] not in RELATIVE_METRICS:
            continue
        rows, _ = rows_for(study, agg)
        base_rows = [r for r in rows if any(is_baseline(c) for c in r.claims)]
        if base_rows and len(base_rows) < len(rows):
            yield Hit(
                f"{_describe(agg)} includes {len(base_rows)} FP32 baseline rows (by definition "
                f"{fmt(base_rows[0].iv.mid)})",
                f"baseline rows: {', '.join(r.model for r in base_rows[:8])}",
                [agg, *(r.claims[0] for r in base_rows[:6])],
            )


@rule(
    "stats.headline_vs_rows",
    family="statistics",
    severity="warning",
    convention="a headline percentage for a precision ('Memory: 75% reduction with INT8') against "
    "the per-model values of that precision: above the largest is an error, more than 5 points "
    "above the mean a best case presented as typical",
)
def headline_vs_rows(study: Study) -> Iterator[Hit]:
    """Headline reductions that only the best model (or no model) reaches."""
    paths = {"int8": "bnb-int8", "fp16": "torch-fp16", "int4": "bnb-nf4", "nf4": "bnb-nf4"}
    for c in study.metric("hardware_reduction_pct"):
        low = c.text.lower()
        if not c.is_number or "memory" not in low:
            continue
        path = next((p for w, p in paths.items() if w in low), None)
        if path is None:
            continue
        vals: dict[str, AuditClaim] = {}
        for x in study.cells("memory_reduction_pct", kit_path=path):
            if study.same_group(x, c) and x.model and (x.model not in vals or x.iv.half < vals[x.model].iv.half):
                vals[x.model] = x  # the most precise print of each model
        if len(vals) < 3:
            continue
        nums = [x.num for x in vals.values()]
        mean, top = float(np.mean(nums)), max(vals.values(), key=lambda x: x.num)
        if c.iv.lo > top.iv.hi:
            sev = "error"
        elif c.num > mean + 5:
            sev = "warning"
        else:
            continue
        yield Hit(
            f"'{c.text.strip(' -*')}': the study's {path} memory reductions average {fmt(mean)}% "
            f"(range {fmt(min(nums))}-{fmt(max(nums))}%); {fmt(c.num)}% is "
            + ("above every model" if sev == "error" else f"the best case ({top.model}), not the typical one"),
            f"{len(nums)} models: mean {fmt(mean)}%, max {fmt(top.num)}% ({top.model}), min {fmt(min(nums))}%",
            [c, top],
            severity=sev,
        )


__all__ = ["Row", "over_spec", "rows_for"]


# ------------------------------------------------------------------ words against the numbers

# the value at which a relative metric means "no change": a speedup of 1x, a reduction of 0%
NEUTRAL: dict[str, float] = {
    "speedup": 1.0,
    "inference_improvement_pct": 0.0,
    "throughput_change_pct": 0.0,
    "memory_reduction_pct": 0.0,
}
_WORD_CLASSES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("leader", re.compile(r"\bleader\w*|\bchampion\w*|\bbest\b", re.I)),
    ("viability", re.compile(r"\bviab(?:le|ility)\b", re.I)),
    (
        "universality",
        re.compile(r"\buniversal\w*|\bacross all\b|\ball (?:tested|models|architectures)\b|\bconsistent\b", re.I),
    ),
    ("gain", re.compile(r"\bgains?\b|\bimprovements?\b|\bbenefits?\b|\bfaster\b", re.I)),
    ("speedup", re.compile(r"\bspeed-?ups?\b", re.I)),
)


_WORD_NOUN = {"leader": "leadership", "gain": "gain", "speedup": "speed-up"}


def _word_class(text: str) -> str | None:
    for name, pat in _WORD_CLASSES:
        if pat.search(text):
            return name
    return None


def printed_in_text(agg: AuditClaim) -> bool:
    """Whether the claim's figure (or both ends of a band) is printed in its words; a verbal claim
    ("universal benefits") transcribed as a bound prints none."""
    vals = agg.value if isinstance(agg.value, list) else [agg.value]
    nums = {float(m.group().replace(",", "")) for m in re.finditer(r"\d[\d,]*(?:\.\d+)?", agg.text)}
    return all(isinstance(v, (int, float)) and any(math.isclose(float(v), n) for n in nums) for v in vals)


@rule(
    "stats.words_vs_numbers",
    family="statistics",
    severity="warning",
    convention="words of gain, leadership, viability or universality ('speedup', 'leader', 'gains', "
    "'viable', 'improvements across all') need values above the neutral point (1x for a speedup, 0% for a "
    "reduction or improvement): a figure so worded that is below it, or a verbal claim over rows of "
    "which some are below it, is contradicted by the document's own numbers; one finding per file and "
    "kind of word",
)
def words_vs_numbers(study: Study) -> Iterator[Hit]:
    """Words of gain or leadership attached to values below 1x, or contradicted by the tables."""
    groups: dict[tuple[str, str], list[tuple[AuditClaim, str, list[AuditClaim]]]] = defaultdict(list)
    for agg in study.claims:
        if agg.kind != "aggregate":
            continue
        spec = over_spec(agg)
        if spec is None or spec[0] not in NEUTRAL:
            continue
        if len(spec[1]) > 1 and agg.aggregate in ("mean", "median"):
            continue  # a figure pooling precisions is below 1x by its pooling: stats.mixed_paths' finding
        word = "leader" if agg.aggregate == "leader" else _word_class(agg.text)
        if word is None:
            continue
        neutral = NEUTRAL[spec[0]]
        unit = "x" if spec[0] == "speedup" else "%"
        if agg.aggregate == "leader":
            got = _ranked_claim_rows(study, agg)
            if got is None or not isinstance(agg.value, str) or agg.value not in got[1]:
                continue
            row = got[1][agg.value]
            if row.iv.hi < neutral:
                groups[(agg.source_file, word)].append(
                    (agg, f"{agg.value} {row.path} {_printed(row)}{unit}", [row.claims[0]])
                )
        elif agg.aggregate in ("at_least", "all_within") and not printed_in_text(agg):
            rows, _missing = rows_for(study, agg)
            below = [r for r in rows if r.iv.hi < neutral]
            if below:
                lo_r, hi_r = min(below, key=lambda r: r.iv.mid), max(below, key=lambda r: r.iv.mid)
                groups[(agg.source_file, word)].append(
                    (
                        agg,
                        f"{len(below)} of {len(rows)} rows below {fmt(neutral)}{unit} "
                        f"({_printed(lo_r)}-{_printed(hi_r)}{unit}: "
                        + ", ".join(r.model for r in sorted(below, key=lambda r: r.iv.mid))
                        + ")",
                        [r.claims[0] for r in below[:6]],
                    )
                )
        else:
            vals = agg.value if isinstance(agg.value, list) else [agg.value]
            if vals and all(isinstance(v, (int, float)) and agg.iv_of(float(v)).hi < neutral for v in vals):
                groups[(agg.source_file, word)].append((agg, "-".join(fmt(float(v)) for v in vals) + unit, []))
    for (src, word), items in sorted(groups.items()):
        first = items[0][0]
        spec = over_spec(first)
        metric = spec[0] if spec else first.metric
        yield Hit(
            f"{src}: {len(items)} statement(s) use words of {_WORD_NOUN.get(word, word)} where the document's "
            f"own {metric} figures are below {fmt(NEUTRAL[metric])}{'x' if metric == 'speedup' else '%'} "
            "(slower or no better than the baseline): "
            + "; ".join(f"'{a.text.strip()[:80]}' ({detail})" for a, detail, _c in items[:6])
            + (f"; ... {len(items) - 6} more" if len(items) > 6 else ""),
            "; ".join(f"{a.id}: {detail}" for a, detail, _c in items),
            [x for a, _d, cs in items for x in (a, *cs)][:24],
        )


@rule(
    "stats.class_claim",
    family="statistics",
    severity="warning",
    convention="a figure stated for a class of models ('86M models hit 2.12x') holds for every member at "
    "the document's printed precision, unless worded as a maximum ('up to', 'best', 'top', 'peak')",
)
def class_claim(study: Study) -> Iterator[Hit]:
    """A class of models credited with its best member's figure, not worded as a maximum."""
    for agg in study.claims:
        if agg.kind != "aggregate" or agg.aggregate != "max" or not agg.is_number:
            continue
        if re.search(
            r"\bup to\b|\bas (?:much|high) as\b|\bbest\b|\btop\b|\bpeak\b|\bmax(?:imum)?\b|\bhighest\b|"
            r"\bleader\b",
            agg.text,
            re.I,
        ):
            continue
        rows, _missing = rows_for(study, agg)
        if len(rows) < 2:
            continue
        short = [r for r in rows if r.claims[0].is_number and r.claims[0].num < agg.num and r.iv.hi < agg.num]
        if not short:
            continue
        yield Hit(
            f"'{agg.text.strip()[:90]}': the class is credited with {fmt(agg.num)}, but {len(short)} of its "
            f"{len(rows)} members do not reach it ({len(rows) - len(short)} of {len(rows)} do); the figure is its best "
            "member's, not the class's, and the text does not say 'up to'",
            f"{agg.id} over {_describe(agg)}: "
            + ", ".join(f"{r.model} {_printed(r)}" for r in sorted(rows, key=lambda r: -r.iv.mid)),
            [agg, *(r.claims[0] for r in short[:12])],
        )


@rule(
    "stats.ranked_order",
    family="statistics",
    severity="warning",
    convention="a numbered list printed with tied (rounded) figures must still follow the unrounded "
    "values the study's tables give (derived from the printed inputs where they are more precise)",
)
def ranked_order(study: Study) -> Iterator[Hit]:
    """A ranked list whose order contradicts its own unrounded values."""
    for agg in study.claims:
        if agg.kind != "aggregate" or agg.aggregate != "top" or "as a set" not in agg.how.lower():
            continue
        if not re.search(r"(?:^|[\s;|])1[.)|]?\s+\S|\|\s*1\s*\|", agg.text):
            continue
        got = _ranked_claim_rows(study, agg)
        listed = agg.value
        if got is None or not isinstance(listed, list) or not all(isinstance(x, str) for x in listed):
            continue
        best = got[1]
        if any(m not in best for m in listed):
            continue
        problems = [(a, b) for i, a in enumerate(listed) for b in listed[i + 1 :] if best[b].iv.lo > best[a].iv.hi]
        if not problems:
            continue
        yield Hit(
            f"{_describe(agg)}: the numbered list ranks "
            + "; ".join(f"{a} ({fmt(best[a].iv.mid)}) above {b} ({fmt(best[b].iv.mid)})" for a, b in problems)
            + ", against the unrounded values",
            "listed order: "
            + " > ".join(f"{m} {fmt(best[m].iv.mid)}" for m in listed)
            + "; by value: "
            + " > ".join(f"{m} {fmt(best[m].iv.mid)}" for m in sorted(listed, key=lambda m: -best[m].iv.mid))
            + f"; values from {', '.join(sorted({best[m].claims[0].location for m in listed}))}",
            [agg, *(best[m].claims[0] for m in listed)],
        )
