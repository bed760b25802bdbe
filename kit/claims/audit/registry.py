"""The rule registry: ``Rule``, the ``@rule`` decorator and ``RULES``, the dict it fills.

A leaf, like timm's ``_registry.py``: the rule modules import it and register into it on import;
it imports no rule module and not the runner (``kit.claims.audit.runner`` imports the rule
modules, so ``RULES`` is complete wherever the runner, or the package, has been imported).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from kit.claims.audit.claim import Study
from kit.claims.audit.findings import SEVERITIES, Hit

FAMILIES: tuple[str, ...] = (
    "arithmetic",
    "statistics",
    "consistency",
    "physics",
    "method",
    "provenance",
    "placeholders",
)

RuleFunc = Callable[[Study], Iterable[Hit]]


@dataclass(frozen=True)
class Rule:
    id: str
    family: str
    severity: str
    convention: str
    func: RuleFunc
    summary: str

    def to_dict(self) -> dict[str, str]:
        return {
            "id": self.id,
            "family": self.family,
            "severity": self.severity,
            "summary": self.summary,
            "convention": self.convention,
        }


RULES: dict[str, Rule] = {}


def rule(rule_id: str, *, family: str, severity: str, convention: str = "") -> Callable[[RuleFunc], RuleFunc]:
    """Register ``func`` as rule ``rule_id``. ``severity`` is the default for its hits; the first
    line of the docstring is the rule's one-line summary; ``convention`` states rounding, std,
    percentile method, MB or MiB."""
    if family not in FAMILIES:
        raise ValueError(f"unknown rule family {family!r}")
    if severity not in SEVERITIES:
        raise ValueError(f"unknown severity {severity!r}")

    def deco(func: RuleFunc) -> RuleFunc:
        if rule_id in RULES and RULES[rule_id].func is not func:
            raise ValueError(f"rule {rule_id!r} registered twice")
        doc = (func.__doc__ or "").strip().splitlines()
        RULES[rule_id] = Rule(rule_id, family, severity, convention, func, doc[0] if doc else rule_id)
        return func

    return deco
