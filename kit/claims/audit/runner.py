"""Runs the rules: every registered rule over the claims, every finding kept.

Shape borrowed from the MLPerf submission checker: every rule runs and every finding is reported.
A rule that raises becomes one finding of kind ``error`` naming the rule and the exception (a bug
of the kit, never a traceback and never silence), and the rules after it still run; a rule that
cannot run here (`RuleSkipped`: an optional package is missing) becomes an ``info`` finding of kind
``skipped`` with the reason.

Importing this module imports every rule family, which registers its rules into
``registry.RULES`` (as timm's model modules register into ``_registry``): ``RULES`` is complete
wherever the runner is importable.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

# The rule families, imported for their registrations.
from kit.claims.audit import (  # noqa: F401
    rules_arithmetic,
    rules_consistency,
    rules_method,
    rules_physics,
    rules_placeholders,
    rules_provenance,
    rules_statistics,
)
from kit.claims.audit.claim import AuditInputError, Study
from kit.claims.audit.findings import SEVERITIES, ClaimRef, Finding, Hit, sort_findings
from kit.claims.audit.optional import RuleSkipped
from kit.claims.audit.registry import RULES, Rule
from kit.errors import one_line


def load_rules() -> dict[str, Rule]:
    """Every registered rule by id (all of them are registered once this module is imported)."""
    return RULES


def _finding(r: Rule, hit: Hit) -> Finding:
    sev = hit.severity or r.severity
    if sev not in SEVERITIES:
        raise ValueError(f"rule yielded unknown severity {sev!r}")
    return Finding(
        rule=r.id,
        family=r.family,
        severity=sev,
        message=" ".join(hit.message.split()),
        evidence=hit.evidence,
        claims=tuple(ClaimRef.of(c) for c in hit.claims),
        convention=r.convention,
    )


def _about_the_rule(r: Rule, kind: str, message: str, evidence: str) -> Finding:
    """A finding about the rule itself (it was skipped, or the kit failed inside it), about no claim."""
    return Finding(
        rule=r.id,
        family=r.family,
        severity="info" if kind == "skipped" else "error",
        message=message,
        evidence=evidence,
        claims=(),
        convention=r.convention,
        kind=kind,
    )


def run_rule(study: Study, r: Rule) -> list[Finding]:
    """One rule's findings; its failure (or skip) is a finding too, after what it yielded before."""
    out: list[Finding] = []
    try:
        for hit in r.func(study):
            out.append(_finding(r, hit))
    except RuleSkipped as skip:
        out.append(
            _about_the_rule(
                r,
                "skipped",
                f"rule {r.id} skipped: {one_line(str(skip))}",
                "the rule could not run on this machine; install the package to run it",
            )
        )
    except Exception as exc:  # run all, report all: a bug in one rule is a finding, never the end of the audit
        out.append(
            _about_the_rule(
                r,
                "error",
                f"rule {r.id} failed (a bug in the kit, not a defect of the claims): {one_line(exc)}",
                "the rule could not finish; the findings it yielded before failing (if any) are kept",
            )
        )
    return out


def run_rules(study: Study, rules: Iterable[Rule]) -> list[Finding]:
    """Every rule in ``rules`` over ``study``, all findings (failures included), sorted."""
    findings: list[Finding] = []
    for r in rules:
        findings.extend(run_rule(study, r))
    return sort_findings(findings)


def select_rules(names: Iterable[str] | None = None) -> list[Rule]:
    """The named rules (all, sorted by id, for None); `AuditInputError` names any unknown one."""
    if names is None:
        return [RULES[k] for k in sorted(RULES)]
    names = list(names)
    unknown = [k for k in names if k not in RULES]
    if unknown:
        raise AuditInputError(f"unknown rule(s): {', '.join(unknown)}")
    return [RULES[k] for k in names]


def run_audit(claims: Any, rules: Iterable[str] | None = None) -> list[Finding]:
    """Run every registered rule (or those named) over ``claims``; return all findings.

    ``claims``: a ``ClaimSet`` from ``kit.claims.load.load_claims``, claim-file documents, or a
    list of claim dicts. Raises ``AuditInputError`` (one line) when they are malformed.
    """
    study = Study.from_input(claims)
    return run_rules(study, select_rules(rules))
