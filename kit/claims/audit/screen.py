"""``qkit audit`` on one screen: findings grouped by severity and root cause (the rule), one line
each; ``--all`` prints the full table (`kit.claims.audit.output.render_table`).

Works on finding *dicts* (``Finding.to_dict()`` or an entry of the findings JSON), so the report
shows the same groups from the file audit wrote.
"""

from __future__ import annotations

import textwrap
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from kit.claims.audit.findings import SEVERITIES

WIDTH = 160


@dataclass
class Cause:
    """The findings of one rule at one severity: one root cause."""

    severity: str
    rule: str
    messages: list[str] = field(default_factory=list)
    claims: list[str] = field(default_factory=list)
    kit_error: bool = False

    def line(self, width: int = WIDTH) -> str:
        n = len(self.messages)
        head = f"{self.severity:<7} {self.rule} ({n}): " if n > 1 else f"{self.severity:<7} {self.rule}: "
        more = f" (+{n - 1} more like it)" if n > 1 else ""
        text = head + self.messages[0] + more
        return text if len(text) <= width else text[: width - 1] + "…"


def _claim_ids(f: dict[str, Any]) -> list[str]:
    return [str(c.get("id", c)) if isinstance(c, dict) else str(c) for c in f.get("claims") or []]


def causes(findings: Sequence[dict[str, Any]]) -> list[Cause]:
    """(severity, rule) groups: the kit's own failures first, then by severity, biggest group first."""
    groups: dict[tuple[str, str], Cause] = {}
    for f in findings:
        sev, rule = str(f.get("severity")), str(f.get("rule"))
        c = groups.setdefault((sev, rule), Cause(sev, rule))
        c.messages.append(str(f.get("message") or ""))
        c.claims += _claim_ids(f)
        c.kit_error = c.kit_error or f.get("kind") == "error"
    rank = {s: i for i, s in enumerate(SEVERITIES)}
    return sorted(
        groups.values(), key=lambda c: (not c.kit_error, rank.get(c.severity, len(rank)), -len(c.messages), c.rule)
    )


def _wrapped(causes: Sequence[Cause], width: int, prefix: str = "") -> list[str]:
    text = prefix + ", ".join(f"{c.rule} ({len(c.messages)})" for c in causes)
    return textwrap.wrap(text, width, initial_indent="  ", subsequent_indent="  ", break_on_hyphens=False)


def screen(
    findings: Sequence[dict[str, Any]],
    *,
    summary_line: str,
    findings_file: str | None,
    width: int = WIDTH,
    one_line_from: str = "info",
    max_lines: int = 58,
) -> list[str]:
    """One line per (severity, rule), the kit's failures and errors first; the severities from
    ``one_line_from`` on, and whatever would pass ``max_lines``, folded into wrapped rule lists."""
    if not findings:
        return ["no findings", summary_line]
    by_sev = Counter(str(f.get("severity")) for f in findings)
    all_causes = causes(findings)
    order = [*SEVERITIES, *sorted(set(by_sev) - set(SEVERITIES))]
    fold_at = SEVERITIES.index(one_line_from) if one_line_from in SEVERITIES else len(SEVERITIES)
    groups = [(i, sev, [c for c in all_causes if c.severity == sev]) for i, sev in enumerate(order)]
    groups = [g for g in groups if g[2]]
    # lines that are spent whatever happens: a blank and a heading per severity, the folded ones, the footer
    folded = {sev: _wrapped(group, width) for i, sev, group in groups if i >= fold_at}
    budget = max_lines - 2 * len(groups) - sum(len(x) for x in folded.values()) - 3
    lines: list[str] = []
    for _i, sev, group in groups:
        lines += ["", f"{by_sev[sev]} {sev} finding(s) from {len(group)} rule(s):"]
        if sev in folded:
            lines += folded[sev]
            continue
        shown = group if len(group) <= budget else group[: max(budget - 2, 0)]
        lines += ["  " + c.line(width - 2) for c in shown]
        rest = group[len(shown) :]
        budget -= len(shown)
        if rest:
            more = _wrapped(rest, width, prefix=f"and {len(rest)} more rules: ")
            lines += more
            budget -= len(more)
    lines += ["", summary_line]
    lines.append(
        f"every finding: {findings_file} (or `qkit audit --all`)"
        if findings_file
        else "every finding with its evidence and claims: `qkit audit --all`, or `--json FILE` to keep them"
    )
    return lines


def markdown(findings: Sequence[dict[str, Any]], *, summary_line: str, findings_file: str | None) -> str:
    """The same grouping as a markdown table (``qkit audit --format md``)."""
    out = [f"**{summary_line}**", ""]
    if findings:
        out += ["| severity | rule | findings | first of them |", "|---|---|---:|---|"]
        for c in causes(findings):
            msg = c.messages[0].replace("|", "\\|")
            out.append(f"| {c.severity} | `{c.rule}` | {len(c.messages)} | {msg} |")
    if findings_file:
        out += ["", f"Every finding: `{findings_file}`."]
    return "\n".join(out) + "\n"
