"""A verdict: its kinds, its fields, and how one is built from a claim."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from kit.claims.load import Claim
from kit.errors import one_line

# ``error`` is the kit's own failure while judging (a bug), never a property of the claim; ``qkit
# validate`` exits 3 on it. Listed last so the summary line of a run without one reads as before.
VERDICTS: tuple[str, ...] = (
    "pass",
    "fail",
    "inconclusive",
    "not-comparable",
    "not-measured",
    "unsupported",
    "error",
)
CLASSES: tuple[str, ...] = ("portable", "relative", "hardware-bound")
# The verdicts that compared a measurement with the claim.
JUDGED: tuple[str, ...] = ("pass", "fail", "inconclusive")


@dataclass
class Verdict:
    claim_id: str
    source_file: str
    section: str
    text: str
    comparability: str
    metric: str
    subject: str
    unit: str
    verdict: str
    claimed: Any
    reason: str
    measured: Any = None
    deviation: float | None = None
    deviation_relative: float | None = None
    tolerance: dict[str, Any] = field(default_factory=dict)
    allowed: list[float] | None = None
    ci95: list[float] | None = None
    cv: float | None = None
    convention: str | None = None
    hardware: dict[str, str | None] | None = None
    cells: list[str] = field(default_factory=list)
    # Only when several machines could speak to the claim (see the package doc); else absent from the JSON.
    summary: str | None = None
    per_machine: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if not self.per_machine:
            del out["summary"], out["per_machine"]
        return out


def base_verdict(claim: Claim, verdict: str, reason: str, **kw: Any) -> Verdict:
    """A verdict on ``claim`` with the claim's own fields filled in; ``kw``: the measured ones."""
    return Verdict(
        claim_id=claim.id,
        source_file=claim.source_file,
        section=claim.section,
        text=claim.text,
        comparability=claim.comparability,
        metric=claim.metric,
        subject=subject_text(claim),
        unit=claim.unit,
        verdict=verdict,
        claimed=claim.value,
        reason=reason,
        tolerance={"kind": claim.tolerance.kind, "value": claim.tolerance.value, "reason": claim.tolerance.reason},
        **kw,
    )


def error_verdict(claim: Claim, exc: BaseException) -> Verdict:
    """The kit failed while judging ``claim``: say so, with the exception in one line, never hide it."""
    return base_verdict(claim, "error", f"internal error while judging {claim.id}: {one_line(exc)}")


def subject_text(claim: Claim) -> str:
    bits = [claim.subject.describe()]
    if claim.subject.kind == "cell" and claim.kit_path:
        bits.append(claim.kit_path)
    if claim.measure_device:
        bits.append(claim.measure_device)
    if claim.batch_size:
        bits.append(f"bs{claim.batch_size}")
    return " ".join(bits)


def device_note(claim: Claim) -> str:
    return f" ({claim.device_note})" if claim.device_note else ""
