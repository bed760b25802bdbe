"""One verdict per claim: cells, aggregates and rankings compared with the claim on each machine
that measured them, then combined across machines; study statements go to `study`.

`judge` is the entry: a claim the kit cannot measure is ``unsupported``; an exception raised while
judging one claim is that claim's ``error`` verdict (the exception in one line), and every other
claim is still judged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from kit.claims.load import Claim, ClaimSet
from kit.claims.validate.index import ResultIndex, screen_results
from kit.claims.validate.machines import (
    ANYWHERE,
    Machine,
    claimed_hardware,
    comparable_machine,
    hardware_field,
    machines_summary,
    overall_verdict,
)
from kit.claims.validate.metrics import (
    BASELINE_PATH,
    MEMORY_METRICS,
    MODEL_PROPERTY,
    Found,
    Rows,
    measure,
    measure_rows,
    memory_phase,
    needs,
    stat_measured,
)
from kit.claims.validate.stats import allowed_interval, classify, one_sided, worst
from kit.claims.validate.study import judge_study
from kit.claims.validate.values import Measured, Missing, fmt
from kit.claims.validate.verdict import Verdict, base_verdict, device_note, error_verdict

# ================================================================================ cells


def _not_comparable(claim: Claim, m: Measured, machine: Machine) -> Verdict:
    claimed = claimed_hardware(claim) or "unstated hardware"
    why = f"hardware-bound: claimed on {claimed} ({claim.device}), measured on {machine.label()}"
    return base_verdict(
        claim,
        "not-comparable",
        f"{why}: ours {fmt(m.value)} {claim.unit} vs claimed {fmt(claim.value)} {claim.unit}, shown, not judged"
        + device_note(claim),
        measured=m.value,
        ci95=list(m.ci95) if m.ci95 else None,
        cv=m.cv,
        convention=m.convention,
        hardware=hardware_field(claim, machine),
        cells=list(m.cells),
    )


def _scalar_verdict(claim: Claim, m: Measured, machine: Machine) -> Verdict:
    claimed = float(claim.value)
    low, high = allowed_interval(claimed, claim.tolerance.kind, claim.tolerance.value)
    outcome = classify(float(m.value), m.ci95, low, high)
    dev = float(m.value) - claimed
    rel = dev / abs(claimed) if claimed else None
    where = "" if machine == ANYWHERE else f" on {machine.label()}"
    if claim.metric in MEMORY_METRICS:
        where += f" (memory phase: {memory_phase(claim)})"
    numbers = (
        f"measured {fmt(m.value)} {claim.unit}{where} vs claimed {fmt(claimed)} {claim.unit}: "
        f"deviation {dev:+.4g}" + (f" ({rel:+.1%})" if rel is not None else "")
    )
    tol = f"tolerance {claim.tolerance.describe()} ({claim.tolerance.reason})"
    if outcome == "inconclusive" and m.ci95 is not None:  # only a CI makes a claim inconclusive
        edge = low if m.ci95 and min(m.ci95) < low <= max(m.ci95) else high
        cv = f", CV {m.cv:.1%}" if m.cv is not None else ""
        ci = f"[{fmt(min(m.ci95))}, {fmt(max(m.ci95))}]"
        reason = (
            f"{numbers}; the 95% CI {ci} straddles the tolerance edge {fmt(edge)}{cv} "
            f"(tolerance {claim.tolerance.describe()})"
        )
    else:
        reason = f"{numbers}, {'within' if outcome == 'pass' else 'outside'} {tol}"
    return base_verdict(
        claim,
        outcome,
        reason + device_note(claim),
        measured=m.value,
        deviation=dev,
        deviation_relative=rel,
        allowed=[low, high],
        ci95=list(m.ci95) if m.ci95 else None,
        cv=m.cv,
        convention=m.convention,
        hardware=None if machine == ANYWHERE else hardware_field(claim, machine),
        cells=list(m.cells),
    )


def _judge_found(
    claim: Claim,
    found: Found,
    index: ResultIndex,
    compare: Callable[[Measured, Machine], Verdict],
    cells: list[tuple[str, str]],
) -> Verdict:
    if isinstance(found, Missing):
        return base_verdict(claim, "not-measured", found.reason + device_note(claim))

    def on(machine: Machine) -> Verdict:
        m = found[machine]
        if claim.comparability == "hardware-bound" and not comparable_machine(claim, machine):
            return _not_comparable(claim, m, machine)
        return compare(m, machine)

    return across_machines(
        claim, index, {machine: on(machine) for machine in found}, claim.measure_device, cells, claim.batch_size
    )


def judge_cell(claim: Claim, index: ResultIndex) -> Verdict:
    model = claim.subject.model or ""
    path = claim.kit_path or (BASELINE_PATH if claim.metric in MODEL_PROPERTY else None)
    if path is None:
        return base_verdict(claim, "unsupported", f"no kit path to measure {claim.metric} on")
    if not isinstance(claim.value, (int, float)) or isinstance(claim.value, bool):
        return base_verdict(claim, "unsupported", f"qkit has no rule to compare a {type(claim.value).__name__} value")
    found = measure(index, claim.metric, model, path, claim.measure_device, claim.batch_size, memory_phase(claim))
    return _judge_found(
        claim, found, index, lambda m, machine: _scalar_verdict(claim, m, machine), needs(claim.metric, model, path)
    )


# ======================================================================= across machines


def across_machines(
    claim: Claim,
    index: ResultIndex,
    per: dict[Machine, Verdict],
    device: str | None,
    cells: list[tuple[str, str]],
    batch: int | None,
) -> Verdict:
    """One verdict from the claim's verdict on each machine that measured it (package doc).

    Machines that measured other cells on ``device`` but not these are counted as not-measured
    there. With one machine in all, its verdict is returned unchanged.
    """
    claimed = claimed_hardware(claim)
    absent: dict[Machine, str] = {}
    if device and ANYWHERE not in per:
        absent = {m: index.absent_reason(m, cells, device, batch) for m in index.measuring(device) if m not in per}
    if len(per) + len(absent) < 2:
        return per[index.pick(per, claimed)]
    outcomes = {**{m: v.verdict for m, v in per.items()}, **{m: "not-measured" for m in absent}}
    overall = overall_verdict(outcomes.values())
    pool = [m for m, v in per.items() if v.verdict == overall] if overall else list(per)
    chosen = per[index.pick(pool, claimed)]
    entries = [
        {"machine": m.label(), "verdict": v.verdict, "measured": v.measured, "reason": v.reason} for m, v in per.items()
    ]
    entries += [
        {"machine": m.label(), "verdict": "not-measured", "measured": None, "reason": why} for m, why in absent.items()
    ]
    order = {m.label(): m for m in outcomes}
    chosen.per_machine = sorted(entries, key=lambda e: order[e["machine"]])
    chosen.summary = machines_summary(outcomes, device)
    return chosen


# ============================================================================ aggregates


def _range_verdict(claim: Claim, rows: Rows, machine: Machine) -> Verdict:
    lo_m = stat_measured("min", {}, rows)
    hi_m = stat_measured("max", {}, rows)
    c_lo, c_hi = (float(x) for x in claim.value)
    kind, tol = claim.tolerance.kind, claim.tolerance.value
    if claim.subject.aggregate == "all_within":
        edge_lo = allowed_interval(c_lo, kind, tol)[0]
        edge_hi = allowed_interval(c_hi, kind, tol)[1]
        outcome = worst(
            one_sided(lo_m.value, lo_m.ci95, edge_lo, True), one_sided(hi_m.value, hi_m.ci95, edge_hi, False)
        )
        rule = (
            f"every row within [{fmt(edge_lo)}, {fmt(edge_hi)}] "
            f"([{fmt(c_lo)}, {fmt(c_hi)}] {claim.tolerance.describe()})"
        )
    else:
        a_lo, a_hi = allowed_interval(c_lo, kind, tol), allowed_interval(c_hi, kind, tol)
        outcome = worst(classify(lo_m.value, lo_m.ci95, *a_lo), classify(hi_m.value, hi_m.ci95, *a_hi))
        rule = f"min within [{fmt(a_lo[0])}, {fmt(a_lo[1])}] and max within [{fmt(a_hi[0])}, {fmt(a_hi[1])}]"
    measured = [lo_m.value, hi_m.value]
    reason = (
        f"measured [min, max] = {fmt(measured)} {claim.unit} on {machine.label()} over {len(rows)} rows vs "
        f"claimed {fmt(claim.value)}: {rule}: {outcome}"
    )
    return base_verdict(
        claim,
        outcome,
        reason,
        measured=measured,
        convention=f"{claim.subject.how}; {lo_m.convention}",
        hardware=hardware_field(claim, machine),
        cells=list(lo_m.cells),
        ci95=[list(lo_m.ci95), list(hi_m.ci95)] if lo_m.ci95 and hi_m.ci95 else None,
    )


def _bound_verdict(claim: Claim, rows: Rows, machine: Machine) -> Verdict:
    at_least = claim.subject.aggregate == "at_least"
    m = stat_measured(claim.subject.aggregate or "", {}, rows)
    low, high = allowed_interval(float(claim.value), claim.tolerance.kind, claim.tolerance.value)
    edge = low if at_least else high
    outcome = one_sided(m.value, m.ci95, edge, at_least)
    word = "smallest" if at_least else "largest"
    reason = (
        f"{word} of {len(rows)} rows is {fmt(m.value)} {claim.unit} on {machine.label()}; the claim needs it "
        f"{'>=' if at_least else '<='} {fmt(edge)} ({fmt(claim.value)} {claim.tolerance.describe()}): {outcome}"
    )
    return base_verdict(
        claim,
        outcome,
        reason,
        measured=m.value,
        deviation=m.value - float(claim.value),
        ci95=list(m.ci95) if m.ci95 else None,
        cv=m.cv,
        convention=f"{claim.subject.how}; {m.convention}",
        hardware=hardware_field(claim, machine),
        cells=list(m.cells),
    )


# ============================================================================== rankings

Ranked = list[tuple[tuple[str, str], Measured]]


def _overlap(a: Measured, b: Measured) -> bool:
    return bool(a.ci95 and b.ci95 and min(a.ci95) <= max(b.ci95) and min(b.ci95) <= max(a.ci95))


def _ranking_outcome(ok: bool, close: bool) -> str:
    return "pass" if ok else ("inconclusive" if close else "fail")


def _leader_verdict(claim: Claim, ranked: Ranked, machine: Machine) -> Verdict:
    (model, path), best = ranked[0]
    ok = model == claim.value and (not claim.kit_path or path == claim.kit_path)
    claimed_row = next(
        (row for row in ranked if row[0][0] == claim.value and (not claim.kit_path or row[0][1] == claim.kit_path)),
        None,
    )
    close = claimed_row is not None and _overlap(claimed_row[1], best)
    outcome = _ranking_outcome(ok, close)
    detail = f"our leader is {model} ({path}) at {fmt(best.value)}"
    if claimed_row is not None and not ok:
        detail += f"; the claimed {claimed_row[0][0]} ({claimed_row[0][1]}) has {fmt(claimed_row[1].value)}"
    return _ranking_result(claim, outcome, detail, model, ranked, machine)


def _top_verdict(claim: Claim, ranked: Ranked, machine: Machine) -> Verdict:
    n = len(claim.value)
    measured = [model for (model, _), _ in ranked[:n]]
    ok = set(measured) == set(claim.value)
    close = len(ranked) > n and _overlap(ranked[n - 1][1], ranked[n][1])
    detail = f"our top {n}: " + ", ".join(f"{model} ({path}) {fmt(m.value)}" for (model, path), m in ranked[:n])
    return _ranking_result(claim, _ranking_outcome(ok, close), detail, measured, ranked, machine)


def _ranking_result(
    claim: Claim, outcome: str, detail: str, measured: Any, ranked: Ranked, machine: Machine
) -> Verdict:
    if outcome == "inconclusive":
        detail += "; the 95% CIs at the rank boundary overlap, so the order is within noise"
    reason = f"{detail} on {machine.label()} vs claimed {fmt(claim.value)}: {outcome}"
    return base_verdict(
        claim,
        outcome,
        reason,
        measured=measured,
        convention=claim.subject.how,
        hardware=hardware_field(claim, machine),
        cells=[c for _, m in ranked for c in m.cells],
    )


def _ranking_verdict(claim: Claim, rows: Rows, machine: Machine) -> Verdict:
    ranked = sorted(rows.items(), key=lambda kv: kv[1].value, reverse=True)
    if claim.subject.aggregate == "leader":
        return _leader_verdict(claim, ranked, machine)
    return _top_verdict(claim, ranked, machine)


def _aggregate_compare(claim: Claim, rows: Rows, machine: Machine) -> Verdict:
    kind = claim.subject.aggregate
    if kind in ("range", "all_within"):
        return _range_verdict(claim, rows, machine)
    if kind in ("at_least", "at_most"):
        return _bound_verdict(claim, rows, machine)
    if kind in ("top", "leader"):
        return _ranking_verdict(claim, rows, machine)
    m = stat_measured(kind or "", claim.subject.params, rows)
    m = Measured(m.value, m.ci95, m.cv, f"{claim.subject.how}; {m.convention}", m.cells)
    return _scalar_verdict(claim, m, machine)


def _aggregate_not_comparable(claim: Claim, rows: Rows, machine: Machine) -> Verdict:
    m = stat_measured("min", {}, rows) if claim.subject.aggregate in ("range", "all_within") else None
    shown = [m.value, stat_measured("max", {}, rows).value] if m else None
    claimed = claimed_hardware(claim) or "unstated hardware"
    return base_verdict(
        claim,
        "not-comparable",
        f"hardware-bound: claimed on {claimed}, measured on {machine.label()}"
        + (f": ours {fmt(shown)} {claim.unit} vs claimed {fmt(claim.value)}" if shown else ""),
        measured=shown,
        hardware=hardware_field(claim, machine),
    )


def judge_aggregate(claim: Claim, index: ResultIndex) -> Verdict:
    found = measure_rows(index, claim)
    if isinstance(found, Missing):
        return base_verdict(claim, "not-measured", found.reason + device_note(claim))

    def on(machine: Machine) -> Verdict:
        if claim.comparability == "hardware-bound" and not comparable_machine(claim, machine):
            return _aggregate_not_comparable(claim, found[machine], machine)
        return _aggregate_compare(claim, found[machine], machine)

    over = claim.subject.over
    assert over is not None
    cells = [cell for model in over.models for path in over.kit_paths for cell in needs(over.metric, model, path)]
    return across_machines(
        claim,
        index,
        {machine: on(machine) for machine in found},
        over.device or claim.measure_device,
        cells,
        claim.batch_size,
    )


# ================================================================================= entry


def judge(claim: Claim, index: ResultIndex) -> Verdict:
    if not claim.supported:
        return base_verdict(claim, "unsupported", claim.unsupported_reason or "not a measurement")
    try:
        if claim.subject.kind == "study":
            return judge_study(claim, index)
        if claim.subject.kind == "aggregate":
            return judge_aggregate(claim, index)
        return judge_cell(claim, index)
    except Exception as exc:  # a bug of ours: loud (verdict `error`, exit 3), and the other claims are still judged
        return error_verdict(claim, exc)


def validate(
    claims: ClaimSet | Iterable[Claim], results: list[Any], *, accuracy: list[Any] | None = None
) -> list[Verdict]:
    """One verdict per claim, in claim order. Documents that are not valid results are ignored
    here; use `screen_results` first to list them (the CLI does)."""
    screened = screen_results([*results, *(accuracy or [])])
    index = ResultIndex(screened.results, screened.accuracy)
    return [judge(claim, index) for claim in claims]
