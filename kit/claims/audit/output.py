"""What ``qkit audit`` writes and prints: the findings document (``findings.schema.json``, written
and checked by ``kit.documents``), the findings table and the one-line summary."""

from __future__ import annotations

import datetime as dt
import shutil
import textwrap
from collections.abc import Sequence
from typing import Any

from kit.claims.audit.claim import Study
from kit.claims.audit.findings import SEVERITIES, Finding, counts, exit_code, kit_errors, skipped
from kit.claims.audit.registry import Rule
from kit.claims.audit.runner import select_rules


def findings_document(
    findings: Sequence[Finding], study: Study, expected_dir: str, rules: Sequence[Rule] | None = None
) -> dict[str, Any]:
    """The JSON document ``--json`` writes: ``findings`` from ``rules`` (default: every rule)."""
    rules = select_rules() if rules is None else sorted(rules, key=lambda r: r.id)
    c = counts(findings)
    return {
        "schema_version": "1",
        "kind": "qkit-findings",
        "generated_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "expected_dir": expected_dir,
        "claim_count": len(study.claims),
        "files": sorted(study.files),
        "summary": {
            **c,
            "total": len(findings),
            "rules_run": len(rules),
            "kit_errors": len(kit_errors(findings)),
            "skipped": len(skipped(findings)),
            "exit_code": exit_code(findings),
        },
        "rules": [r.to_dict() for r in rules],
        "findings": [f.to_dict() for f in findings],
    }


def render_table(findings: Sequence[Finding], width: int | None = None) -> str:
    """Findings as a table: severity, rule, what is wrong; then evidence and claims (with sources)."""
    width = width or max(80, min(160, shutil.get_terminal_size((120, 20)).columns))
    rule_w = max([len("RULE"), *(len(f.rule) for f in findings)])
    head = f"{'SEVERITY':<8}  {'RULE':<{rule_w}}  WHAT IS WRONG"
    indent = " " * (8 + 2 + rule_w + 2)
    body_w = max(40, width - len(indent))
    lines = [head, "-" * min(width, len(head) + 40)]
    for f in findings:
        msg = textwrap.wrap(f.message, body_w, break_on_hyphens=False) or [""]
        lines.append(f"{f.severity:<8}  {f.rule:<{rule_w}}  {msg[0]}")
        lines += [indent + m for m in msg[1:]]
        for label, text in (("evidence", f.evidence), ("claims", _claims_text(f))):
            wrapped = textwrap.wrap(f"{label}: {text}", body_w, subsequent_indent="  ", break_on_hyphens=False) or []
            lines += [indent + w for w in wrapped[:6]]
            if len(wrapped) > 6:
                lines.append(indent + "  ... (see --json)")
    return "\n".join(lines)


def _claims_text(f: Finding) -> str:
    if not f.claims:
        return "none"
    parts = [f"{c.id} [{c.source_file} / {c.section}]" for c in f.claims[:4]]
    more = len(f.claims) - 4
    return "; ".join(parts) + (f"; +{more} more" if more > 0 else "")


def summary_line(findings: Sequence[Finding], study: Study, rules_run: int) -> str:
    """``audit: N findings (...) from R rules over C claims in F files``, plus any failed or skipped rule."""
    c = counts(findings)
    by = ", ".join(f"{c[s]} {s}" for s in SEVERITIES)
    line = (
        f"audit: {len(findings)} findings ({by}) from {rules_run} rules over {len(study.claims)} claims "
        f"in {len(study.files)} files"
    )
    if failed := kit_errors(findings):
        line += f"; {len(failed)} rule(s) failed, a bug in the kit: {', '.join(sorted({f.rule for f in failed}))}"
    if skips := skipped(findings):
        line += f"; {len(skips)} rule(s) skipped: {', '.join(sorted({f.rule for f in skips}))}"
    return line
