"""Arithmetic: a derived number against the numbers it is derived from.

Every relation is checked with interval arithmetic on the published rounding (see
``numbers``): ``speedup 2.50`` from ``25.59 / 10.24`` is fine (2.4985-2.4995 meets 2.495-2.505).
When several tables print the same input (seed 001 prints latencies twice, seed 003 once more),
a derived value is accepted if it follows from *any* printed copy of its inputs; copies that
disagree with each other are the business of ``consistency.cell_values``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from kit.claims.audit.claim import AuditClaim, Study, is_baseline, path_key
from kit.claims.audit.findings import Hit
from kit.claims.audit.numbers import Iv, fmt, gap_severity
from kit.claims.audit.registry import rule


def _batch_ok(a: AuditClaim, b: AuditClaim) -> bool:
    return a.batch_size is None or b.batch_size is None or a.batch_size == b.batch_size


def _tiers(study: Study, target: AuditClaim, pool: Sequence[AuditClaim]) -> list[list[AuditClaim]]:
    """Candidate inputs, nearest first: same printed table, same file, same study (hardware)."""
    same_table = [c for c in pool if c.location == target.location]
    same_file = [c for c in pool if c.source_file == target.source_file and c not in same_table]
    same_group = [c for c in pool if c.source_file != target.source_file and study.same_group(c, target)]
    return [same_table, same_file, same_group]


def _baselines(study: Study, target: AuditClaim, metric: str) -> list[AuditClaim]:
    return [
        c
        for c in study.cells(metric, model=target.model)
        if is_baseline(c) and _batch_ok(c, target) and study.same_group(c, target)
    ]


def _same_path(study: Study, target: AuditClaim, metric: str) -> list[AuditClaim]:
    return [
        c
        for c in study.cells(metric, model=target.model, kit_path=path_key(target))
        if _batch_ok(c, target) and study.same_group(c, target)
    ]


@dataclass(frozen=True)
class Formula:
    """``value = f(base, path)`` over one input metric, described for evidence lines."""

    base_metric: str
    describe: str  # e.g. "{b} / {p}"
    fn: Callable[[Iv, Iv], Iv]


@dataclass
class _Trial:
    formula: Formula
    base: AuditClaim
    path: AuditClaim
    result: Iv


def _trials(study: Study, target: AuditClaim, formulas: Sequence[Formula]) -> Iterator[list[_Trial]]:
    """Per tier of nearness, every (formula, baseline copy, path copy) evaluation."""
    pools = {}
    for f in formulas:
        if f.base_metric not in pools:
            pools[f.base_metric] = (
                _baselines(study, target, f.base_metric),
                _same_path(study, target, f.base_metric),
            )
    for tier in range(3):
        out: list[_Trial] = []
        for f in formulas:
            bases, paths = pools[f.base_metric]
            bt = _tiers(study, target, bases)
            pt = _tiers(study, target, paths)
            # pair inputs of the same tier (both from the target's table, then file, then study)
            for b in bt[tier]:
                for p in pt[tier] + (pt[0] + pt[1] if tier == 2 else []):
                    try:
                        out.append(_Trial(f, b, p, f.fn(b.iv, p.iv)))
                    except ZeroDivisionError:
                        continue
        yield out


def check_derived(
    study: Study,
    target_metrics: Sequence[str],
    formulas: Callable[[AuditClaim], Sequence[Formula]],
    what: str,
    extra_rel: float = 0.0,
    error_rel: float = 0.02,
    baseline_value: float | None = None,
) -> Iterator[Hit]:
    """Shared loop: each numeric cell claim of ``target_metrics`` against its inputs."""
    for metric in target_metrics:
        for target in study.cells(metric):
            if is_baseline(target):
                if baseline_value is not None and not target.iv.meets(Iv.point(baseline_value)):
                    yield Hit(
                        f"{what} of the baseline itself should be {fmt(baseline_value)}, published "
                        f"{fmt(target.num)} ({target.model})",
                        f"baseline row: {what} = {fmt(baseline_value)} by definition; published {fmt(target.num)}",
                        [target],
                        severity="error",
                    )
                continue
            fs = formulas(target)
            if not fs:
                continue
            claimed = target.iv
            best: _Trial | None = None
            ok = False
            tried_any = False
            for trials in _trials(study, target, fs):
                if not trials:
                    continue
                tried_any = True
                for t in trials:
                    if claimed.meets(t.result.widen(rel=extra_rel)):
                        ok = True
                        break
                    if best is None or claimed.gap(t.result) < claimed.gap(best.result):
                        best = t
                if ok:
                    break
            if ok or not tried_any or best is None:
                continue
            b, p = best.base, best.path
            expr = best.formula.describe.format(b=fmt(b.num), p=fmt(p.num))
            tol = f" (+/-{extra_rel:.0%} allowed)" if extra_rel else ""
            sev = gap_severity(claimed, best.result.widen(rel=extra_rel), error_rel)
            yield Hit(
                f"{target.model} {path_key(target)}: published {what} {fmt(target.num)} does not follow "
                f"from its inputs ({expr} = {fmt(best.result.mid)})",
                f"{expr} = {fmt(best.result.mid)}, interval {best.result} from the printed rounding "
                f"of {b.id} and {p.id}; published {fmt(target.num)} = {claimed}{tol}; "
                f"gap {fmt(claimed.gap(best.result))}",
                [target, b, p],
                severity=sev,
            )


# --------------------------------------------------------------------------------- rules

_SPEEDUP = (
    Formula("latency_ms", "{b} ms / {p} ms", lambda b, p: b / p),
    Formula("throughput_sps", "{p} / {b} samples/s", lambda b, p: p / b),
)


@rule(
    "arith.speedup",
    family="arithmetic",
    severity="error",
    convention="speedup = FP32 latency / path latency (or path / FP32 throughput) at the same batch size; "
    "inputs and result taken as intervals of their printed rounding; FP32 rows must read 1.0",
)
def speedup(study: Study) -> Iterator[Hit]:
    """A speedup must equal the ratio of the latencies (or throughputs) it compares."""
    yield from check_derived(study, ["speedup"], lambda c: _SPEEDUP, "speedup", baseline_value=1.0)


@rule(
    "arith.throughput",
    family="arithmetic",
    severity="warning",
    convention="throughput (samples/s) = batch x 1000 / latency (ms); printed rounding plus 1% "
    "(throughput may be timed in its own loop); error above 5%",
)
def throughput(study: Study) -> Iterator[Hit]:
    """Throughput must agree with batch x 1000 / latency of the same cell."""
    for target in study.cells("throughput_sps"):
        batch = target.batch_size or 1
        claimed = target.iv
        cands = [c for c in _same_path(study, target, "latency_ms") if c.iv.lo > 0]
        if not cands or claimed.lo <= 0:
            continue
        results = [(c, Iv.point(1000.0 * batch) / c.iv) for c in cands]
        if any(claimed.meets(r.widen(rel=0.01)) for _, r in results):
            continue
        c, r = min(results, key=lambda cr: claimed.gap(cr[1]))
        sev = "error" if claimed.rel_gap(r) > 0.05 else "warning"
        yield Hit(
            f"{target.model} {path_key(target)}: throughput {fmt(target.num)}/s does not match "
            f"{batch} x 1000 / {fmt(c.num)} ms = {fmt(r.mid)}/s",
            f"{batch} x 1000 / {fmt(c.num)} ms = {r} ({c.id}); published {claimed}; 1% allowed; "
            f"gap {claimed.rel_gap(r):.1%}",
            [target, c],
            severity=sev,
        )


_MEM_REDUCTION = (Formula("peak_memory_mb", "100 x (1 - {p} / {b})", lambda b, p: (1 - p / b) * 100.0),)


@rule(
    "arith.memory_reduction",
    family="arithmetic",
    severity="error",
    convention="memory reduction % = 100 x (1 - path peak / FP32 peak), same unit both sides; "
    "intervals of printed rounding; FP32 rows must read 0",
)
def memory_reduction(study: Study) -> Iterator[Hit]:
    """A memory reduction % must follow from the two peak-memory figures it compares."""
    yield from check_derived(
        study, ["memory_reduction_pct"], lambda c: _MEM_REDUCTION, "memory reduction %", baseline_value=0.0
    )


def _pct_formulas(target: AuditClaim) -> Sequence[Formula]:
    """Which input a percentage change speaks of, from its metric name and section."""
    m = target.metric
    blob = f"{m} {target.section} {target.text}".lower()
    out: list[Formula] = []
    if "size" in m or ("size" in blob and "memory" not in m):
        base = "model_size_mb"
        out.append(Formula(base, "100 x (1 - {p} / {b})", lambda b, p: (1 - p / b) * 100.0))
    elif "memory" in m:
        base = "peak_memory_mb"
        out.append(Formula(base, "100 x (1 - {p} / {b})", lambda b, p: (1 - p / b) * 100.0))
    else:
        # inference/throughput/latency changes: published both as throughput gains
        # ("+149.9%") and as latency reductions (seed 004 "36.6%"); accept either reading.
        out += [
            Formula("throughput_sps", "100 x ({p} / {b} - 1)", lambda b, p: (p / b - 1) * 100.0),
            Formula("latency_ms", "100 x ({b} / {p} - 1)", lambda b, p: (b / p - 1) * 100.0),
            Formula("latency_ms", "100 x (1 - {p} / {b})", lambda b, p: (1 - p / b) * 100.0),
        ]
    return out


_PCT_METRICS_EXCLUDED = {"memory_reduction_pct", "success_rate_pct"}


def _is_change_metric(metric: str) -> bool:
    if metric in _PCT_METRICS_EXCLUDED or not metric.endswith("_pct"):
        return False
    return any(w in metric for w in ("improvement", "impact", "reduction", "change", "gain", "increase"))


@rule(
    "arith.percent_change",
    family="arithmetic",
    severity="error",
    convention="throughput gain % = 100 x (path/FP32 - 1); latency change % = 100 x (FP32/path - 1) "
    "or reduction 100 x (1 - path/FP32); size/memory reduction % = 100 x (1 - path/FP32); "
    "any of these readings is accepted; intervals of printed rounding",
)
def percent_change(study: Study) -> Iterator[Hit]:
    """A published % improvement/impact/reduction must follow from the two figures it compares."""
    metrics = [m for m in study.metrics() if _is_change_metric(m)]
    yield from check_derived(study, metrics, _pct_formulas, "change %")


def _difference_base(metric: str) -> str | None:
    for suffix in ("_difference", "_delta", "_diff", "_drop"):
        for tail in ("_pp", "_pct", ""):
            s = suffix + tail
            if metric.endswith(s):
                return metric[: -len(s)]
    return None


@rule(
    "arith.difference",
    family="arithmetic",
    severity="error",
    convention="difference = path value - baseline value of the same metric (percentage points for "
    "accuracies); intervals of printed rounding",
)
def difference(study: Study) -> Iterator[Hit]:
    """A published difference (e.g. accuracy -0.28 pp) must equal path minus baseline."""
    for metric in study.metrics():
        base_metric = _difference_base(metric)
        if not base_metric:
            continue
        candidates = [base_metric, base_metric + "_pct"]
        for target in study.cells(metric):
            # both signs are accepted: a "-0.28%" drop may be printed either way round
            yield from _difference_one(study, target, candidates)


def _difference_one(study: Study, target: AuditClaim, candidates: Sequence[str]) -> Iterator[Hit]:
    claimed = target.iv
    best = None
    for bm in candidates:
        bases = _baselines(study, target, bm)
        paths = _same_path(study, target, bm)
        for b in bases:
            for p in paths:
                for r in (p.iv - b.iv, b.iv - p.iv):
                    if claimed.meets(r):
                        return
                    if best is None or claimed.gap(r) < claimed.gap(best[2]):
                        best = (b, p, r)
    if best is None:
        return
    b, p, r = best
    yield Hit(
        f"{target.model} {path_key(target)}: published difference {fmt(target.num)} is not "
        f"{fmt(p.num)} - {fmt(b.num)} = {fmt(p.num - b.num)}",
        f"{fmt(p.num)} - {fmt(b.num)} = {r} ({p.id}, {b.id}); published {claimed}",
        [target, b, p],
        severity=gap_severity(claimed, r),
    )


def _money_pairs(study: Study) -> Iterator[tuple[AuditClaim, AuditClaim]]:
    """(monthly, annual) figures of the same row: same subject item, or the same id stem."""

    def per(c: AuditClaim, *words: str) -> bool:
        return c.is_number and c.kind == "study" and any(w in c.metric for w in words)

    monthly = [c for c in study.claims if per(c, "month")]
    annual = [c for c in study.claims if per(c, "year", "annual")]
    for m in monthly:
        stem, item = m.id.rsplit(".", 1)[0], m.subject.get("item")
        for a in annual:
            if a.source_file != m.source_file or a.metric.replace("year", "") != m.metric.replace("month", ""):
                continue
            if (item and a.subject.get("item") == item) or (not item and a.id.rsplit(".", 1)[0] == stem):
                yield m, a


@rule(
    "arith.annualised",
    family="arithmetic",
    severity="error",
    convention="annual = 12 x monthly for the same row; ROI % = 100 x (total gain - cost) / cost",
)
def annualised(study: Study) -> Iterator[Hit]:
    """Annual figures must be 12 x the monthly ones; a stated ROI must follow from gain and cost."""
    for m, a in _money_pairs(study):
        r = m.iv * 12.0
        if not a.iv.meets(r):
            yield Hit(
                f"annual figure {fmt(a.num)} is not 12 x monthly {fmt(m.num)} = {fmt(12 * m.num)}",
                f"12 x {fmt(m.num)} = {r}; published {a.iv}",
                [a, m],
                severity=gap_severity(a.iv, r),
            )
    for roi in study.claims:
        if not (roi.is_number and roi.metric.startswith("roi")):
            continue
        stem = roi.id.rsplit(".", 1)[0]
        same = [c for c in study.claims if c.source_file == roi.source_file and c.is_number]
        # the cost and the yearly gain stated beside the ROI (same id stem, no per-row item)
        costs = [c for c in same if c.metric in ("cost_usd", "development_cost_usd", "investment_usd")]
        gains = [
            c
            for c in same
            if c.metric in ("savings_usd_per_year", "cost_reduction_usd_per_year") and not c.subject.get("item")
        ]
        costs.sort(key=lambda c: c.id.rsplit(".", 1)[0] != stem)
        gains.sort(key=lambda c: c.id.rsplit(".", 1)[0] != stem)
        years = re.search(r"(\d+)\s*-?\s*years?", f"{roi.text} {roi.subject.get('item') or ''}", re.I)
        if not costs or not gains or years is None:
            continue
        cost, gain, horizon = costs[0], gains[0], int(years.group(1))
        if cost.iv.lo <= 0:
            continue
        total = gain.iv * float(horizon)
        computed = (total - cost.iv) / cost.iv * 100.0
        simple = total / cost.iv * 100.0  # "return" read as gain / cost, without netting the cost
        if roi.iv.meets(computed.widen(rel=0.05)) or roi.iv.meets(simple.widen(rel=0.05)):
            continue
        yield Hit(
            f"ROI {fmt(roi.num)}% does not follow from {fmt(gain.num)}/year over {horizon} years "
            f"against a {fmt(cost.num)} cost ({fmt(computed.mid)}%)",
            f"({horizon} x {fmt(gain.num)} - {fmt(cost.num)}) / {fmt(cost.num)} = {fmt(computed.mid)}% "
            f"(gain/cost alone {fmt(simple.mid)}%); published {fmt(roi.num)}%",
            [roi, gain, cost],
            severity="error",
        )


def _is_table_row(c: AuditClaim) -> bool:
    return bool(c.raw.get("table_cell")) or c.text.lstrip().startswith("|")


@rule(
    "arith.stated_total",
    family="arithmetic",
    severity="error",
    convention="a total stated in the text of a section (same metric and unit, not a table row) must equal "
    "the sum of that section's table rows, within the rounding of the printed figures",
)
def stated_total(study: Study) -> Iterator[Hit]:
    """A total stated in the text that is not the sum of the document's own table."""
    groups: dict[tuple[str, str, str, str], list[AuditClaim]] = {}
    for c in study.claims:
        if c.kind == "study" and c.is_number and c.unit:
            groups.setdefault((c.source_file, c.section, c.metric, c.unit), []).append(c)
    for (_src, section, metric, unit), cs in sorted(groups.items()):
        rows = [c for c in cs if _is_table_row(c)]
        totals = [c for c in cs if not _is_table_row(c)]
        if len(rows) < 2 or len(totals) != 1:
            continue
        total = totals[0]
        s = Iv.point(0.0)
        for r in rows:
            s = s + r.iv
        if total.iv.meets(s):
            continue
        yield Hit(
            f"'{total.text.strip(' -')[:90]}': the stated total {fmt(total.num)} {unit} is not the sum of the "
            f"{len(rows)} rows of its own table, {fmt(s.mid)} {unit} ({fmt(total.num - s.mid)} {unit} "
            f"{'more' if total.num > s.mid else 'less'})",
            f"{' + '.join(fmt(r.num) for r in rows)} = {fmt(s.mid)} ({section}, {metric}); stated {fmt(total.num)}",
            [total, *rows],
            severity=gap_severity(total.iv, s),
        )


_SAVINGS_METRICS = ("infrastructure_savings_pct", "instance_reduction_pct", "cost_reduction_pct")


@rule(
    "arith.savings_vs_speedup",
    family="arithmetic",
    severity="warning",
    convention="a speedup s lets a fleet shrink by at most 1 - 1/s; a percentage saving of instances or "
    "cost is checked against the speedup stated beside it (same section), else against the study's "
    "speedups of the path it names (the most any model reaches, and their mean)",
)
def savings_vs_speedup(study: Study) -> Iterator[Hit]:
    """Percentage savings larger than the stated speedup allows (1 - 1/speedup)."""
    for c in study.claims:
        if c.metric not in _SAVINGS_METRICS:
            continue
        vals = c.value if isinstance(c.value, list) else [c.value]
        if not vals or not all(isinstance(v, (int, float)) for v in vals):
            continue
        top = max(float(v) for v in vals)
        beside = [
            x
            for x in study.claims
            if x.source_file == c.source_file
            and x.section == c.section
            and x.metric == "speedup"
            and x.is_number
            and x.kind == "cell"
        ]
        if beside:
            s = max(beside, key=lambda x: x.num)
            allowed = (1 - 1 / s.iv.hi) * 100
            if c.iv_of(top).lo > allowed:
                yield Hit(
                    f"'{c.text.strip(' -')[:90]}': {fmt(top)}% fewer instances needs a "
                    f"{fmt(1 / (1 - top / 100))}x speedup, but the speedup stated beside it is {fmt(s.num)}x, which "
                    f"allows at most {fmt(allowed)}%",
                    f"1 - 1/{fmt(s.num)} = {fmt(allowed)}% < {fmt(top)}% ({s.id})",
                    [c, s],
                )
            continue
        path = c.kit_path or ("torch-fp16" if re.search(r"\bfp16\b", c.text, re.I) else None)
        if path is None:
            continue
        rows: dict[str, float] = {}
        for x in study.cells("speedup", kit_path=path):
            if study.same_group(x, c) and x.model:
                rows.setdefault(x.model, x.num)
        if not rows:
            continue
        mean = sum(rows.values()) / len(rows)
        best = max(rows.values())
        need = 1 / (1 - top / 100) if top < 100 else math.inf
        allowed_mean = (1 - 1 / mean) * 100
        if c.iv_of(top).lo <= allowed_mean:
            continue
        reach = sorted(m for m, v in rows.items() if v >= need - 0.005)
        low = min(float(v) for v in vals)
        need_low = 1 / (1 - low / 100) if low < 100 else math.inf
        reach_low = sum(1 for v in rows.values() if v >= need_low - 0.005)
        yield Hit(
            f"'{c.text.strip(' -')[:90]}': {fmt(top)}% needs a {fmt(need)}x {path} speedup; the study's own {path} "
            f"speedups average {fmt(mean)}x (at most {fmt(max(allowed_mean, 0))}% saving) and "
            + (
                f"only {', '.join(reach)} reach{'es' if len(reach) == 1 else ''} {fmt(need)}x"
                if reach
                else f"none reaches {fmt(need)}x (best {fmt(best)}x)"
            )
            + (
                f"; even {fmt(low)}% needs {fmt(need_low)}x, which {reach_low} of {len(rows)} models reach"
                if low < top
                else ""
            ),
            f"1 - 1/s: mean {fmt(mean)}x -> {fmt(allowed_mean)}%, best {fmt(best)}x -> {fmt((1 - 1 / best) * 100)}%; "
            f"{len(rows)} {path} speedups",
            [c],
        )
