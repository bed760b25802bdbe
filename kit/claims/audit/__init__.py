"""``qkit audit``: what a careful reviewer with a calculator, the model configs and the hardware's
data sheet finds in the published claims before re-running anything.

Modules, one job each (imports point down this list only; no cycles):

* ``numbers``: intervals on the published rounding (``Iv``), ``fmt``, ``rounding_half_width``;
* ``claim``: the claim model (``AuditClaim``, ``FileInfo``, ``Study``), claim parsing and the
  shared lookups (``path_key``, ``is_baseline``);
* ``model_facts``: the registry's facts about a study model (``arch``, ``real_params``);
* ``optional``: optional third-party packages of a rule (``optional_module``, ``RuleSkipped``);
* ``findings``: ``Hit``, ``Finding``, ``ClaimRef``, severities, finding kinds, ``exit_code``;
* ``registry``: ``Rule``, the ``@rule`` decorator and ``RULES`` (a leaf: imports no rule);
* ``rules_*``: the rule families, one small function per rule; they import the toolbox and the
  registry, never the runner or each other;
* ``runner``: imports the rule families (registering them) and runs them all (``run_audit``);
* ``output``: the findings document, the table and the summary line.
"""

from __future__ import annotations

from kit.claims.audit.claim import AuditClaim, AuditInputError, Study
from kit.claims.audit.findings import Finding, Hit, counts, exit_code
from kit.claims.audit.optional import RuleSkipped, optional_module
from kit.claims.audit.output import findings_document, render_table, summary_line
from kit.claims.audit.registry import RULES, Rule, rule
from kit.claims.audit.runner import load_rules, run_audit, run_rules, select_rules

__all__ = [
    "RULES",
    "AuditClaim",
    "AuditInputError",
    "Finding",
    "Hit",
    "Rule",
    "RuleSkipped",
    "Study",
    "counts",
    "exit_code",
    "findings_document",
    "load_rules",
    "optional_module",
    "render_table",
    "rule",
    "run_audit",
    "run_rules",
    "select_rules",
    "summary_line",
]
