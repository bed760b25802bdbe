"""``qkit audit``: what a careful reviewer with a calculator, the model configs and the hardware's
data sheet finds in the published claims before re-running anything.

``run_audit(claims) -> list[Finding]`` runs every registered rule (``engine.RULES``); the rule
families live in ``rules_*.py``, one small function per rule, registered with ``@rule``.
"""

from __future__ import annotations

from kit.claims.audit.engine import (
    RULES,
    AuditInputError,
    Finding,
    Rule,
    Study,
    counts,
    load_rules,
    run_audit,
)

__all__ = ["RULES", "AuditInputError", "Finding", "Rule", "Study", "counts", "load_rules", "run_audit"]
