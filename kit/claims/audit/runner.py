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
from types import CodeType
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
from kit.claims.audit.model_facts import is_study_model
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
    rules = list(rules)
    findings: list[Finding] = []
    for r in rules:
        findings.extend(run_rule(study, r))
    notice = unknown_models_notice(study, rules)
    if notice is not None:
        findings.append(notice)
    return sort_findings(findings)


# What a rule calls to learn a model's architecture from the kit's registry (`model_facts`).
_REGISTRY_NAMES = frozenset({"arch", "real_params", "is_study_model"})


def _code_names(code: CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, CodeType):
            names |= _code_names(const)
    return names


def reads_registry(r: Rule) -> bool:
    """Whether the rule (or a function nested in it) asks the registry for a model's facts."""
    return bool(_code_names(r.func.__code__) & _REGISTRY_NAMES)


def unknown_models_notice(study: Study, rules: Iterable[Rule]) -> Finding | None:
    """One info finding when the claims name models the kit's registry does not know.

    The rules that read architecture facts (parameters, FLOPs, patch size) from the registry
    cannot check those models and say nothing about them; a reviewer must be told that silence
    there is not a clean bill. The other rules ran on every claim.
    """
    unknown = sorted({c.model for c in study.claims if c.model and not is_study_model(c.model)})
    blind = sorted(r.id for r in rules if reads_registry(r))
    if not unknown or not blind:
        return None
    shown = ", ".join(unknown[:8]) + (f" and {len(unknown) - 8} more" if len(unknown) > 8 else "")
    return Finding(
        rule="audit.unknown_models",
        family="provenance",
        severity="info",
        message=(
            f"{len(unknown)} model(s) of these claims are not in the kit's registry ({shown}): "
            f"{len(blind)} rules that check claims against a model's architecture did not check them"
        ),
        evidence="rules that read the registry: " + ", ".join(blind),
        claims=(),
        convention="the registry holds the bundled study's 16 models; other models are skipped, not passed",
        kind="skipped",
    )


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
