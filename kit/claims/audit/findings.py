"""What the audit reports: ``Hit`` (what a rule yields), ``Finding`` (a hit stamped with its rule),
``ClaimRef`` (a claim and its source, as a finding cites it), the severities, and the exit code
they add up to.

A finding has a ``kind`` as well as a severity, because the audit can say three different things:

* ``claim``: a defect of the published claims (severity error, warning or info, the rule's call);
* ``error``: the kit itself failed while a rule ran (a bug of ours, never a statement about the
  claims); always severity ``error``, and it makes ``qkit audit`` exit 3;
* ``skipped``: a rule could not run on this machine (an optional third-party package is missing),
  with the reason; severity ``info``.

Exit codes: 0 no error-level finding, 1 an error-level finding about the claims, 3 the kit failed
(wins over 1: the findings of a broken run are incomplete). 2, bad input, never gets this far.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from kit.claims.audit.claim import AuditClaim

SEVERITIES: tuple[str, ...] = ("error", "warning", "info")
KINDS: tuple[str, ...] = ("claim", "error", "skipped")

EXIT_CLEAN = 0
EXIT_CLAIM_ERROR = 1
EXIT_BAD_INPUT = 2
EXIT_KIT_FAILED = 3

_SEV_ORDER = {s: i for i, s in enumerate(SEVERITIES)}


@dataclass(frozen=True)
class ClaimRef:
    id: str
    source_file: str
    section: str
    text: str

    @staticmethod
    def of(c: AuditClaim) -> ClaimRef:
        return ClaimRef(c.id, c.source_file, c.section, c.text[:200])


@dataclass
class Hit:
    """What a rule function yields; the runner turns it into a ``Finding``."""

    message: str
    evidence: str
    claims: Sequence[AuditClaim] = ()
    severity: str | None = None  # None: the rule's default


@dataclass(frozen=True)
class Finding:
    rule: str
    family: str
    severity: str
    message: str
    evidence: str
    claims: tuple[ClaimRef, ...]
    convention: str = ""
    kind: str = "claim"

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "family": self.family,
            "severity": self.severity,
            "kind": self.kind,
            "message": self.message,
            "evidence": self.evidence,
            "convention": self.convention,
            "claims": [dataclasses.asdict(r) for r in self.claims],
        }


def sort_findings(findings: Iterable[Finding]) -> list[Finding]:
    """The kit's own failures first (they make the rest incomplete), then by severity, family, rule."""
    return sorted(findings, key=lambda f: (f.kind != "error", _SEV_ORDER[f.severity], f.family, f.rule))


def counts(findings: Iterable[Finding]) -> dict[str, int]:
    """Findings per severity (a kit error counts as an error: it is one)."""
    out = dict.fromkeys(SEVERITIES, 0)
    for f in findings:
        out[f.severity] += 1
    return out


def kit_errors(findings: Iterable[Finding]) -> list[Finding]:
    return [f for f in findings if f.kind == "error"]


def skipped(findings: Iterable[Finding]) -> list[Finding]:
    return [f for f in findings if f.kind == "skipped"]


def exit_code(findings: Sequence[Finding]) -> int:
    """3 when the kit failed in any rule, else 1 when any finding is an error, else 0."""
    if kit_errors(findings):
        return EXIT_KIT_FAILED
    return EXIT_CLAIM_ERROR if counts(findings)["error"] else EXIT_CLEAN
