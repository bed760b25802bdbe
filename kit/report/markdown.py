"""``report.md``: one page a reviewer reads to know what was measured and which claims held.

`build_report` loads the result documents and validate's / audit's JSON (each optional), draws
the figures beside the markdown and writes the page. Every section renders from what is on disk;
a missing input becomes a sentence saying so, never an exception.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kit import documents
from kit.errors import one_line
from kit.report import data

Doc = dict[str, Any]


@dataclass
class SideInput:
    """validate's or audit's JSON as the report found it."""

    label: str  # "validate" | "audit"
    file: Path | None
    items: list[dict[str, Any]] | None = None  # None: not run / unreadable
    problem: str | None = None  # why items is None, or a schema complaint about a file still used
    raw: Any = None


@dataclass
class ReportResult:
    report: Path
    figures: list[Any] = field(default_factory=list)
    n_docs: int = 0
    corrupt: list[tuple[str, str]] = field(default_factory=list)
    verdicts: SideInput | None = None
    findings: SideInput | None = None
    details: Path | None = None
    html: Path | None = None

    def line(self) -> str:
        drawn = sum(1 for f in self.figures if f.file)
        return (
            f"report: {self.report} ({self.n_docs} result documents, {drawn} of {len(self.figures)} figures; "
            f"verdicts: {_side_state(self.verdicts)}; findings: {_side_state(self.findings)})"
            + (f"; every table: {self.details.name}, sortable: {self.html.name}" if self.details and self.html else "")
        )


def _side_state(side: SideInput | None) -> str:
    if side is None:
        return "not read"
    if side.items is None:
        return (side.problem or f"{side.label} not run").replace("`", "")
    return f"{len(side.items)} from {side.file}"


# ---------------------------------------------------------------- inputs


def read_side_input(label: str, candidates: list[Path], kind: str, extract: Any) -> SideInput:
    """The first existing file of ``candidates``, read strictly; a missing file means the step did not run.

    ``kind`` is its `kit.documents` kind (``verdicts``, ``findings``). A file that cannot be read
    (not a regular file, too big, not standard JSON) is shown as unreadable, never an exception.
    """
    # lexists, not is_file: a FIFO or a dangling link named verdicts.json is reported, not skipped.
    file = next((c for c in candidates if os.path.lexists(c)), None)
    if file is None:
        tried = ", ".join(f"`{c}`" for c in candidates)
        return SideInput(label, None, problem=f"{label} not run (no {tried})")
    try:
        raw = documents.read_json(file)
    except documents.DocumentError as exc:
        return SideInput(label, file, problem=f"{label} output `{file}` unreadable: {exc.problem}")
    side = SideInput(label, file, items=extract(raw), raw=raw)
    side.problem = _schema_problem(raw, kind)
    return side


def _schema_problem(raw: Any, kind: str) -> str | None:
    # The schema belongs to the command that wrote the file; a mismatch is shown, the data still used.
    schema = documents.KINDS[kind]
    try:
        problem = documents.problem(raw, kind)
    except Exception as exc:  # a broken or missing schema file must not stop the report
        return f"could not check against {schema}: {one_line(exc)}"
    return f"does not match {schema} {problem}" if problem else None


# ---------------------------------------------------------------- formatting helpers


class Html(str):
    """Cell content that is already markup (``<br>`` between list items): not HTML-escaped again."""


def cell_text(value: Any) -> str:
    """A value made safe for one markdown table cell.

    ``<`` and ``>`` are escaped because GitHub drops what looks like an HTML tag, and an error
    message such as ``<class 'RuntimeError'>`` would vanish from the page.
    """
    text = "" if value is None else str(value)
    if not isinstance(value, Html):
        text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        text = text.replace("\\", "\\\\")
    return text.replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def table(header: list[str], rows: list[list[Any]], align: list[str] | None = None) -> str:
    align = align or ["l"] * len(header)
    marks = {"l": "---", "r": "---:", "c": ":---:"}
    lines = ["| " + " | ".join(cell_text(h) for h in header) + " |", "| " + " | ".join(marks[a] for a in align) + " |"]
    lines += ["| " + " | ".join(cell_text(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def num(x: float | None, digits: int = 4) -> str:
    """Significant digits without scientific notation for the magnitudes a report shows."""
    if x is None:
        return "-"
    if abs(x) >= 10**digits:
        return f"{x:,.0f}"
    if x != 0 and abs(x) < 10 ** -(digits - 1):
        return f"{x:.{digits - 2}e}"
    text = f"{x:.{digits}g}"
    return text if "e" not in text else f"{x:.{max(digits - 1, 0)}f}"


def ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}×"


def pct(x: float | None) -> str:
    return "-" if x is None else f"{x:+.1f} %"


def value_text(value: Any, unit: str | None = None) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        text = num(value)
    elif isinstance(value, (list, tuple)):
        text = ", ".join(value_text(v) for v in value)
    elif isinstance(value, dict):
        text = json.dumps(value, sort_keys=True)
    else:
        text = str(value)
    return f"{text} {unit}" if unit and unit not in ("", "count") and not isinstance(value, (list, dict, str)) else text


def tolerance_text(tol: Any, unit: str | None = None) -> str:
    if not isinstance(tol, dict):
        return value_text(tol)
    kind, v = tol.get("kind"), tol.get("value")
    if kind == "relative" and isinstance(v, (int, float)):
        return f"±{v * 100:g} % (relative)"
    if kind == "absolute":
        return f"±{value_text(v)}" + (f" {unit}" if unit else "") + " (absolute)"
    return str(kind or "-")


def counts_line(counter: dict[str, int]) -> str:
    return ", ".join(f"{n} {k}" for k, n in counter.items() if n) or "none"


# ---------------------------------------------------------------- sections


def section_glance(
    loaded: Any, rows: list[dict[str, Any]], verdicts: SideInput, findings: SideInput, figures: list[Any]
) -> str:
    counts = data.status_counts(loaded.docs)
    lines = ["## At a glance", ""]
    lines.append(
        f"- **Cells:** {len(loaded.docs)} result documents: {counts_line(counts)}"
        + (f"; {len(loaded.corrupt)} corrupt file(s) ignored" if loaded.corrupt else "")
        + "."
    )
    if verdicts.items is None:
        lines.append(f"- **Claims:** {verdicts.problem}.")
    else:
        c = Counter(data.verdict_of(v) for v in verdicts.items)
        ordered_counts = {k: c[k] for k in sorted(c, key=_verdict_rank)}
        lines.append(f"- **Claims:** {len(verdicts.items)} verdicts: {counts_line(ordered_counts)}.")
    if findings.items is None:
        lines.append(f"- **Audit:** {findings.problem}.")
    else:
        c = Counter(data.finding_row(f)["severity"] for f in findings.items)
        ordered_counts = {k: c[k] for k in sorted(c, key=data.severity_rank)}
        lines.append(f"- **Audit:** {len(findings.items)} findings: {counts_line(ordered_counts)}.")
    noisy = data.noisy_cells(rows)
    if noisy:
        lines.append(
            f"- **Noise:** {len(noisy)} of {len(rows)} measured cells carry a noise warning (marked ⚠ in the matrix)."
        )
    drawn = [f for f in figures if f.file]
    lines.append(
        f"- **Figures:** {len(drawn)} of {len(figures)} drawn"
        + ("; " + ", ".join(f"{f.name} not drawn" for f in figures if not f.file) if len(drawn) < len(figures) else "")
        + "."
    )
    return "\n".join(lines)


def _verdict_rank(v: str) -> tuple[int, str]:
    return (data.VERDICT_ORDER.index(v) if v in data.VERDICT_ORDER else len(data.VERDICT_ORDER), v)


def section_environment(docs: list[Doc]) -> str:
    envs = data.environments(docs)
    lines = ["## Environment", ""]
    if not envs:
        return "\n".join([*lines, "No result documents, so no environment was recorded."])
    if len(envs) > 1:
        lines += [f"The results come from {len(envs)} distinct environments (merged runs).", ""]
    for i, env in enumerate(envs, 1):
        if len(envs) > 1:
            lines += [f"### Environment {i} ({env['cells']} cells; devices: {', '.join(env['devices'])})", ""]
        pkgs = ", ".join(f"{k} {v}" for k, v in env["packages"].items())
        rows = [
            ["CPU", f"{env['cpu_model']} ({env['cores']} usable cores)"],
            ["CPU ISA flags present", ", ".join(env["isa"]) or "none of those checked"],
            ["CPU ISA flags absent", ", ".join(env["isa_missing"]) or "-"],
            ["GPU", env["gpu"]],
            ["CUDA", env["cuda"]],
            ["Python / OS", f"{env['python']} / {env['os']}"],
            ["Packages", pkgs],
            ["qkit", env["kit"]],
        ]
        lines += [table(["", "recorded"], rows), ""]
    return "\n".join(lines).rstrip()


_MATRIX_HEADER = [
    "model",
    "path",
    "bs",
    "p50 ms [95% CI]",
    "p99 ms",
    "CV",
    "n",
    "samples/s",
    "peak MiB",
    "weights MiB",
    "size MiB",
    "speedup",
    "peak mem. reduction",
    "cosine",
    "top-1 agree",
    "noise",
]
_MATRIX_ALIGN = ["l", "l", "r", "r", "r", "r", "r", "r", "r", "r", "r", "r", "r", "r", "r", "c"]


def _matrix_row(r: dict[str, Any]) -> list[Any]:
    lo, hi = r["p50_ci95"]
    return [
        r["model"],
        r["path"] + (f" ({r['provider']})" if r["provider"] else ""),
        r["batch_size"],
        f"{num(r['p50_ms'])} [{num(lo)}-{num(hi)}]",
        num(r["p99_ms"]),
        f"{r['cv']:.1%}",
        r["iterations"],
        num(r["throughput_sps"]),
        num(r["peak_mb"]),
        num(r["weights_mb"]),
        num(r["size_mb"]),
        ratio(r["speedup"]),
        pct(r["memory_reduction_pct"]),
        f"{r['cosine']:.6f}",
        "-" if r["top1"] is None else f"{r['top1']:.0%}",
        "⚠" if r["noise_warnings"] else "",
    ]


def section_matrix(rows: list[dict[str, Any]]) -> str:
    lines = ["## Measured matrix", ""]
    if not rows:
        return "\n".join([*lines, "No cell was measured (see the skipped and failed cells below)."])
    lines += [
        "Latency is per forward pass of one batch; speedup = torch-fp32 p50 / path p50 and *peak mem. "
        "reduction* = 1 - inference-phase peak / torch-fp32's (negative: more memory than FP32), both on the "
        "same device "
        'and batch size ("-" where that baseline was not measured). Fidelity compares each path\'s output '
        "with torch-fp32 on CPU on the same weights and inputs.",
        "",
    ]
    for dev in data.ordered((r["device"] for r in rows), data.device_rank):
        sub = [r for r in rows if r["device"] == dev]
        lines += [
            f"### {dev} ({len(sub)} cells)",
            "",
            table(_MATRIX_HEADER, [_matrix_row(r) for r in sub], _MATRIX_ALIGN),
            "",
        ]
    noisy = data.noisy_cells(rows)
    if noisy:
        lines += ["**Noise warnings** (the measurement's own warnings; treat these numbers with care):", ""]
        lines += [
            f"- {r['model']} / {r['path']} / {r['device']} / bs{r['batch_size']}: " + "; ".join(r["noise_warnings"])
            for r in noisy
        ]
    return "\n".join(lines).rstrip()


def figure_block(fig: Any, out_dir: Path) -> str:
    lines = [f"### {fig.title}", ""]
    if fig.file:
        rel = Path(fig.file).relative_to(out_dir).as_posix()
        lines += [f"![{fig.title}]({rel})", ""]
    else:
        lines += [f"*Not drawn: {fig.why_not}.*", ""]
    if fig.caption:
        lines.append(fig.caption)
    return "\n".join(lines).rstrip()


def section_figures(figures: list[Any], out_dir: Path, skip: tuple[str, ...]) -> str:
    blocks = [figure_block(f, out_dir) for f in figures if f.name not in skip]
    return "\n\n".join(["## Figures", *blocks])


_VERDICT_HEADER = ["claim", "about", "published", "measured here [95% CI]", "allowed", "why"]


def _ci_text(ci: Any) -> str:
    """validate's ci95: one interval, or two (the ends of a range claim)."""
    if not isinstance(ci, (list, tuple)) or len(ci) != 2:
        return ""
    if all(isinstance(x, (list, tuple)) for x in ci):
        return " [" + "; ".join(_ci_text(x).strip(" []") for x in ci) + "]"
    return f" [{value_text(ci[0])}-{value_text(ci[1])}]"


def _allowed_text(r: dict[str, Any]) -> str:
    allowed = r["allowed"]
    if isinstance(allowed, (list, tuple)) and len(allowed) == 2:
        unit = f" {r['unit']}" if r["unit"] else ""
        return f"{value_text(allowed[0])} to {value_text(allowed[1])}{unit}"
    return tolerance_text(r["tolerance"], r["unit"])


def _verdict_table_row(r: dict[str, Any]) -> list[Any]:
    why = f"{r['summary']}: {r['reason']}" if r.get("summary") else r["reason"]
    return [
        f"`{r['claim']}`",
        r["subject"] or r["metric"] or "",
        value_text(r["claimed"], r["unit"]),
        value_text(r["measured"], r["unit"]) + _ci_text(r["interval"]),
        _allowed_text(r),
        why,
    ]


def _verdicts_provenance(raw: Any) -> str:
    if not isinstance(raw, dict):
        return ""
    parts = []
    if raw.get("generated_utc"):
        parts.append(f"written {raw['generated_utc']}")
    if raw.get("expected_dir"):
        parts.append(f"claims from `{raw['expected_dir']}`")
    return f" ({', '.join(parts)})" if parts else ""


def stale_note(raw: Any, results_dir: Path, n_docs: int) -> str | None:
    """Verdicts computed on other results (another directory, or before cells were added) do not
    describe these results; say so rather than show them as if they did."""
    if not isinstance(raw, dict):
        return None
    rerun = f"rerun `qkit validate --results {results_dir}` to judge these results"
    theirs = Path(raw["results_dir"]) if raw.get("results_dir") else None
    # A relative path written from another working directory cannot be compared; only an
    # existing directory that is not ours is flagged.
    if theirs is not None and theirs.exists() and theirs.resolve() != results_dir.resolve():
        return f"these verdicts were computed on `{theirs}`, not on `{results_dir}`: {rerun}."
    seen = (raw.get("results") or {}).get("documents")
    if isinstance(seen, int) and seen != n_docs:
        return f"validate read {seen} result documents, this report {n_docs}: {rerun}."
    return None


_MAKES = {
    "validate": "run `qkit validate` to check the claims against these results.",
    "audit": "run `qkit audit` to check the claims for internal consistency.",
}


def _not_run(
    lines: list[str], side: SideInput, command: str, figure: Any | None = None, out_dir: Path | None = None
) -> str:
    """A section whose side input is missing: why, and the command (validate or audit) that makes it."""
    problem = side.problem or f"{side.label} not run"
    lines.append(f"{problem[0].upper()}{problem[1:]}: {_MAKES[command]}")
    if figure is not None and out_dir is not None:
        lines += ["", figure_block(figure, out_dir)]
    return "\n".join(lines)


def section_verdicts(side: SideInput, figure: Any | None, out_dir: Path, results_dir: Path, n_docs: int) -> str:
    lines = ["## Published beside measured (validate)", ""]
    if side.items is None:
        return _not_run(lines, side, "validate", figure, out_dir)
    file = side.file or Path(f"{side.label}.json")  # items are only set with the file they came from
    lines.append(
        f"From [`{file.name}`]({_rel(file, out_dir)})"
        + _verdicts_provenance(side.raw)
        + ", which holds every field of every verdict. Measured values here are validate's, computed by "
        "its own conventions (each verdict's `convention` says how, e.g. which latency statistic), so "
        "they can differ a little from the p50-based matrix and figures above."
    )
    stale = stale_note(side.raw, results_dir, n_docs)
    if stale:
        lines.append(f"**Note:** {stale}")
    if side.problem:
        lines.append(f"Note: the file {side.problem}; what could be read is shown.")
    groups = data.group_verdicts(side.items)
    lines += ["", table(["verdict", "claims"], [[name, len(rows)] for name, rows in groups], ["l", "r"]), ""]
    lines += [collapsible(verdict_crosstab(groups), "verdicts per metric", is_open=False), ""]
    across = section_machine_matrix(side)
    if across:
        lines += [across, ""]
    if figure is not None:
        lines += [figure_block(figure, out_dir), ""]
    for name, rows in groups:
        body = verdict_group_table(name, rows)
        lines += [f"### {name} ({len(rows)})", "", collapsible(body, f"{len(rows)} claims", name in OPEN_VERDICTS), ""]
    return "\n".join(lines).rstrip()


def section_machine_matrix(side: SideInput) -> str:
    """Claims × machines when the verdicts come from more than one machine; "" otherwise."""
    machines = data.machines_named(side.raw, side.items or [])
    if len(machines) < 2:
        return ""
    matrix = data.machine_matrix(side.items or [], machines)
    lines = [
        "### Across machines",
        "",
        f"The results come from {len(machines)} machines: " + ", ".join(f"`{m}`" for m in machines) + ". "
        "A claim measured on several is judged on each by the same rules (a hardware-bound claim only where "
        "the GPU model is the claimed one); overall it fails if it fails on any machine that could judge it "
        "and passes if it passes on all of them, else it is inconclusive.",
        "",
    ]
    if not matrix["rows"]:
        return "\n".join([*lines, "No claim was judged (pass, fail or inconclusive) on two or more machines."])
    legend = ", ".join(f"{sym} {name}" for name, sym in data.VERDICT_SYMBOL.items() if name != "unsupported")
    header = ["claim", "overall", *[data.short_machine(m) for m in matrix["machines"]], "summary"]
    body = [
        [
            f"`{r['claim']}`",
            r["verdict"],
            *[data.VERDICT_SYMBOL.get(r["cells"].get(m, ""), r["cells"].get(m, "")) for m in matrix["machines"]],
            r["summary"],
        ]
        for r in matrix["rows"]
    ]
    shown, total = len(matrix["rows"]), matrix["total"]
    lines.append(
        f"{total} claims were judged on two or more machines"
        + (f"; the first {shown} are shown (failures first), the verdict file has all." if shown < total else ".")
        + f" Symbols: {legend}; blank: that machine did not measure the claim's device."
    )
    lines += [
        "",
        collapsible(
            table(header, body, ["l", "l", *["c"] * len(matrix["machines"]), "l"]),
            f"{shown} claims × {len(matrix['machines'])} machines",
            is_open=True,
        ),
    ]
    return "\n".join(lines)


def _rel(target: Path, out_dir: Path) -> str:
    """A link from report.md to ``target`` that works on GitHub (relative, forward slashes)."""
    return Path(os.path.relpath(Path(target).resolve(), Path(out_dir).resolve())).as_posix()


def verdict_group_table(name: str, rows: list[dict[str, Any]]) -> str:
    """One verdict group as a table. Groups whose rows repeat one reason are shown compactly, so
    a thousand claims still fit a page GitHub renders; the JSON keeps every reason in full."""
    if name == "unsupported":
        by_reason: dict[str, list[str]] = {}
        for r in rows:
            by_reason.setdefault(r["reason"], []).append(f"`{r['claim']}`")
        biggest_first = sorted(by_reason.items(), key=lambda kv: -len(kv[1]))
        return table(
            ["why no measurement can speak to it", "claims", "which"],
            [[why, len(ids), ", ".join(ids)] for why, ids in biggest_first],
            ["l", "r", "l"],
        )
    if name == "not-comparable":
        pairs = Counter(_hardware_pair(r) for r in rows if isinstance(r.get("hardware"), dict))
        note = "; ".join(f"{pair} ({n} claims)" for pair, n in pairs.most_common())
        # The hardware pair is said once above the table; only other reasons are repeated per row.
        body = table(
            ["claim", "about", "published", "measured here", "why (if not the hardware)"],
            [
                [
                    f"`{r['claim']}`",
                    r["subject"] or r["metric"] or "",
                    value_text(r["claimed"], r["unit"]),
                    value_text(r["measured"], r["unit"]),
                    "" if isinstance(r.get("hardware"), dict) else r["reason"],
                ]
                for r in rows
            ],
        )
        return (f"Shown beside ours, not judged: {note}.\n\n" if note else "") + body
    if name == "pass":
        return table(_VERDICT_HEADER[:-1], [_verdict_table_row(r)[:-1] for r in rows])
    return table(_VERDICT_HEADER, [_verdict_table_row(r) for r in rows])


def _hardware_pair(r: dict[str, Any]) -> str:
    hw = r["hardware"]
    return f"published on {hw.get('claimed') or 'unstated hardware'}, ours on {hw.get('ours') or 'no GPU'}"


# The verdicts a reviewer reads first stay open; long lists of the others fold away.
OPEN_VERDICTS = ("error", "fail", "inconclusive")
FOLD_ROWS = 15


def collapsible(body: str, summary: str, is_open: bool, rows: int | None = None) -> str:
    """A GitHub ``<details>`` block around a markdown table (blank lines keep the table rendering)."""
    n = body.count("\n") - 1 if rows is None else rows
    if n <= FOLD_ROWS and not is_open:
        return body
    return f"<details{' open' if is_open else ''}><summary>{summary}</summary>\n\n{body}\n\n</details>"


def verdict_crosstab(groups: list[tuple[str, list[dict[str, Any]]]]) -> str:
    """Claims per metric (rows) and verdict (columns), busiest metric first."""
    names = [name for name, _rows in groups]
    counts: dict[str, Counter[str]] = {}
    for name, rows in groups:
        for r in rows:
            counts.setdefault(str(r["metric"] or "(none)"), Counter())[name] += 1
    order = sorted(counts, key=lambda m: (-sum(counts[m].values()), m))
    body = [[m, *[counts[m][n] or "" for n in names], sum(counts[m].values())] for m in order]
    return table(["metric", *names, "all"], body, ["l", *["r"] * (len(names) + 1)])


def section_findings(side: SideInput, out_dir: Path) -> str:
    lines = ["## Audit findings", ""]
    if side.items is None:
        return _not_run(lines, side, "audit")
    file = side.file or Path(f"{side.label}.json")  # items are only set with the file they came from
    lines.append(
        f"From [`{file.name}`]({_rel(file, out_dir)}): what the claims say of themselves, without any measurement."
    )
    if side.problem:
        lines.append(f"Note: the file {side.problem}; what could be read is shown.")
    groups = data.group_findings(side.items)
    if not groups:
        return "\n".join([*lines, "", "No findings."])
    lines += ["", table(["severity", "findings"], [[s, len(rows)] for s, rows in groups], ["l", "r"]), ""]
    lines += [collapsible(_rule_table(groups, side.raw), "findings per rule", is_open=False), ""]
    for sev, rows in groups:
        folded = collapsible(_finding_table(rows), f"{len(rows)} findings", sev in OPEN_SEVERITIES)
        lines += [f"### {sev} ({len(rows)})", "", folded, ""]
    return "\n".join(lines).rstrip()


def _finding_table(rows: list[dict[str, Any]]) -> str:
    return table(
        ["rule", "claims", "message", "evidence"],
        [
            [f"`{r['rule']}`", ", ".join(f"`{c}`" for c in r["claims"]) or "-", r["message"], value_text(r["evidence"])]
            for r in rows
        ],
    )


OPEN_SEVERITIES = ("error",)


def _rule_table(groups: list[tuple[str, list[dict[str, Any]]]], raw: Any) -> str:
    """Findings per (severity, rule), with what the rule checks when audit listed its rules."""
    summaries = {}
    if isinstance(raw, dict) and isinstance(raw.get("rules"), list):
        summaries = {r.get("id"): r.get("summary", "") for r in raw["rules"] if isinstance(r, dict)}
    by_rule = Counter((r["severity"], r["rule"]) for _s, rows in groups for r in rows)
    order = sorted(by_rule.items(), key=lambda kv: (data.severity_rank(kv[0][0]), -kv[1], kv[0][1]))
    return table(
        ["rule", "severity", "findings", "what it checks"],
        [[f"`{rule}`", sev, n, summaries.get(rule, "")] for (sev, rule), n in order],
        ["l", "l", "r", "l"],
    )


def section_not_ok(docs: list[Doc], corrupt: list[tuple[str, str]]) -> str:
    rows = data.not_ok_rows(docs)
    lines = ["## Skipped and failed cells", ""]
    if not rows:
        lines.append("None: every cell in the results was measured.")
    else:
        groups = data.group_not_ok(rows)
        lines += [f"{len(rows)} cells were not measured, in {len(groups)} groups by reason.", ""]
        body = [
            [
                g["status"],
                g["reason"],
                len(g["cells"]),
                Html(
                    "<br>".join(
                        cell_text(f"{c['model']} · {c['path']} · {c['device']} · bs{c['batch_size']}")
                        for c in g["cells"]
                    )
                ),
            ]
            for g in groups
        ]
        lines.append(table(["status", "reason", "cells", "which"], body, ["l", "l", "r", "l"]))
    if corrupt:
        lines += [
            "",
            f"**{len(corrupt)} corrupt result file(s)** were ignored (rerun `qkit reproduce` to redo them):",
            "",
        ]
        lines.append(table(["file", "problem"], [[f"`{f}`", why] for f, why in corrupt]))
    return "\n".join(lines)


def section_method(docs: list[Doc]) -> str:
    rows = data.method_rows(docs)
    lines = ["## How things were measured", ""]
    if not rows:
        return "\n".join([*lines, "No cell was measured, so no method was recorded."])
    lines += ["Read from the result documents (distinct values, with how many measured cells used each).", ""]
    body = []
    for what, values in rows:
        for k, (value, n) in enumerate(values):
            body.append([what if k == 0 else "", value, n])
    lines.append(table(["what", "recorded", "cells"], body, ["l", "l", "r"]))
    return "\n".join(lines)


# ---------------------------------------------------------------- the one-page report

DETAILS = "details.md"
HTML = "report.html"
PASS_ROWS = 150


def _pivot(rows: list[dict[str, Any]], value: Any, paths: list[str]) -> str:
    """Models (rows) by paths (columns), as the study lays out its tables."""
    models = data.ordered((r["model"] for r in rows), data.model_rank)
    by = {(r["model"], r["path"]): r for r in rows}
    body = []
    for m in models:
        cells = []
        for p in paths:
            r = by.get((m, p))
            cells.append("" if r is None else value(r))
        body.append([m, *cells])
    return table(["model", *paths], body, ["l", *["r"] * len(paths)])


def _inference_memory(r: dict[str, Any]) -> str:
    """The inference phase where the document has it; older documents only their whole-cell peak, marked."""
    if r.get("inference_mb") is not None:
        return num(r["inference_mb"])
    return f"{num(r['peak_mb'])} (whole cell†)"


def section_study_matrix(rows: list[dict[str, Any]]) -> str:
    """The measured matrix in the study's layout: one table per quantity and device, models by paths."""
    lines = ["## Measured matrix", ""]
    if not rows:
        return "\n".join([*lines, "No cell was measured (see the skipped and failed cells below)."])
    lines += [
        "Batch size 1 unless marked; p50 latency per forward pass (⚠: the cell warns about its own noise), "
        "speedup = torch-fp32 p50 / path p50 and memory during inference (warm-up and timed loop), both on "
        "the same device; † marks a document older than memory phases, whose only figure is the peak over "
        "the whole cell (model build and quantization included). Every cell with its "
        f"95% CI, p99, CV, throughput, sizes and fidelity: [{DETAILS}]({DETAILS}#every-measured-cell).",
        "",
    ]
    for dev in data.ordered((r["device"] for r in rows), data.device_rank):
        for bs in sorted({r["batch_size"] for r in rows if r["device"] == dev}):
            sub = [r for r in rows if r["device"] == dev and r["batch_size"] == bs]
            paths = data.ordered((r["path"] for r in sub), data.path_rank)
            tag = f"{dev}" + (f", batch {bs}" if bs != 1 else "")
            lines += [
                f"### {tag}: p50 latency (ms)",
                "",
                _pivot(sub, lambda r: num(r["p50_ms"]) + (" ⚠" if r["noise_warnings"] else ""), paths),
                "",
                f"### {tag}: speedup over torch-fp32",
                "",
                _pivot(sub, lambda r: ratio(r["speedup"]), paths),
                "",
                f"### {tag}: inference-phase peak memory (MiB above the process baseline)",
                "",
                _pivot(sub, _inference_memory, paths),
                "",
            ]
    return "\n".join(lines).rstrip()


def _verdict_dicts(side: SideInput) -> list[dict[str, Any]]:
    """The verdicts as validate's screen reads them (``claim_id``, ``verdict``, ...)."""
    out = []
    for v in side.items or []:
        row = data.verdict_row(v)
        out.append({**v, "claim_id": row["claim"], "verdict": row["verdict"], "comparability": row["comparability"]})
    return out


def section_claims(side: SideInput, figure: Any | None, out_dir: Path, results_dir: Path, n_docs: int) -> str:
    """Which claims hold here, which fail and why, and what it would take to judge the rest."""
    from kit.claims.validate import screen

    lines = ["## Claims: what holds here", ""]
    if side.items is None:
        return _not_run(lines, side, "validate", figure, out_dir)
    file = side.file or Path(f"{side.label}.json")
    lines.append(
        f"From [`{file.name}`]({_rel(file, out_dir)})"
        + _verdicts_provenance(side.raw)
        + f"; every verdict with its numbers and reason: [{DETAILS}]({DETAILS}#every-verdict)."
    )
    stale = stale_note(side.raw, results_dir, n_docs)
    if stale:
        lines.append(f"**Note:** {stale}")
    if side.problem:
        lines.append(f"Note: the file {side.problem}; what could be read is shown.")
    verdicts = _verdict_dicts(side)
    counts = Counter((str(v.get("comparability")), str(v["verdict"])) for v in verdicts)
    present = [n for n in data.VERDICT_ORDER if any(v["verdict"] == n for v in verdicts)]
    present += sorted({str(v["verdict"]) for v in verdicts} - set(present))
    classes = [c for c in ("portable", "relative", "hardware-bound") if any(k[0] == c for k in counts)]
    classes += sorted({k[0] for k in counts} - set(classes))
    body = [
        [c, *[counts.get((c, n), 0) for n in present], sum(counts.get((c, n), 0) for n in present)] for c in classes
    ]
    body.append(["all", *[sum(counts.get((c, n), 0) for c in classes) for n in present], len(verdicts)])
    lines += ["", table(["class", *present, "all"], body, ["l", *["r"] * (len(present) + 1)]), ""]
    groups = dict(data.group_verdicts(side.items))
    for name in OPEN_VERDICTS:
        rows = groups.get(name)
        if rows:
            lines += [f"### {name} ({len(rows)})", "", verdict_group_table(name, rows), ""]
    if not any(groups.get(n) for n in OPEN_VERDICTS):
        lines += ["No claim failed or was inconclusive.", ""]
    passed = groups.get("pass") or []
    if passed:
        shown = passed[:PASS_ROWS]
        pass_table = verdict_group_table("pass", shown)
        lines += [
            f"### pass ({len(passed)})",
            "",
            collapsible(pass_table, f"{len(passed)} claims hold here", False),
            "",
        ]
        if len(shown) < len(passed):
            lines += [f"The other {len(passed) - len(shown)}: [{DETAILS}]({DETAILS}#every-verdict).", ""]
    blockers = screen.blockers(verdicts)
    if blockers:
        n = sum(len(b.claims) for b in blockers)
        lines += [f"### Not judged here ({n})", "", "Grouped by what would let them be judged:", ""]
        lines += [f"- {cell_text(b.line())}" for b in blockers]
        lines.append("")
    machines = data.machines_named(side.raw, side.items or [])
    if len(machines) > 1 and data.machine_matrix(side.items or [], machines)["rows"]:
        lines += [section_machine_matrix(side), ""]
    if figure is not None:
        lines += [figure_block(figure, out_dir), ""]
    return "\n".join(lines).rstrip()


def section_audit(side: SideInput, out_dir: Path) -> str:
    """The audit's errors, one line per rule; the warnings and notes counted."""
    from kit.claims.audit import screen

    lines = ["## Audit: what the claims say of themselves", ""]
    if side.items is None:
        return _not_run(lines, side, "audit")
    file = side.file or Path(f"{side.label}.json")
    lines.append(
        f"From [`{file.name}`]({_rel(file, out_dir)}), without any measurement; every finding with its evidence "
        f"and claims: [{DETAILS}]({DETAILS}#every-finding)."
    )
    if side.problem:
        lines.append(f"Note: the file {side.problem}; what could be read is shown.")
    rows = [data.finding_row(f) for f in side.items]
    causes = screen.causes([{**r, "kind": r["raw"].get("kind")} for r in rows])
    if not causes:
        return "\n".join([*lines, "", "No findings."])
    errors = [c for c in causes if c.severity in ("error", "critical")]
    rest = Counter(c.severity for c in causes if c not in errors for _ in c.messages)
    if errors:
        n = sum(len(c.messages) for c in errors)
        lines += ["", f"{n} error-level findings from {len(errors)} rules:", ""]
        lines.append(
            table(
                ["rule", "findings", "the first of them"],
                [[f"`{c.rule}`", len(c.messages), c.messages[0]] for c in errors],
                ["l", "r", "l"],
            )
        )
    if rest:
        lines += [
            "",
            "Also "
            + ", ".join(f"{n} {sev}" for sev, n in rest.items())
            + f" findings ([{DETAILS}]({DETAILS}#every-finding)).",
        ]
    return "\n".join(lines)


def section_not_ok_short(docs: list[Doc], corrupt: list[tuple[str, str]]) -> str:
    rows = data.not_ok_rows(docs)
    lines = ["## Skipped and failed cells", ""]
    if not rows:
        lines.append("None: every cell in the results was measured.")
    else:
        groups = data.group_not_ok(rows)
        lines += [f"{len(rows)} cells were not measured ([every one]({DETAILS}#skipped-and-failed-cells)):", ""]
        lines.append(
            table(
                ["status", "reason", "cells"],
                [[g["status"], g["reason"], len(g["cells"])] for g in groups],
                ["l", "l", "r"],
            )
        )
    if corrupt:
        lines += [
            "",
            f"**{len(corrupt)} corrupt result file(s)** were ignored (rerun `qkit reproduce` to redo them):",
            "",
        ]
        lines.append(table(["file", "problem"], [[f"`{f}`", why] for f, why in corrupt]))
    return "\n".join(lines)


def _head(results_dir: Path, loaded: Any, title: str) -> str:
    from kit import __version__

    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return "\n".join(
        [
            f"# {title}: `{results_dir}`",
            "",
            f"Generated {now} by qkit {__version__} from {len(loaded.docs)} result documents. "
            "Every number below was measured in these runs; nothing is copied from the study except the "
            "published values the claims quote.",
        ]
    )


def render(
    results_dir: Path, out_dir: Path, loaded: Any, verdicts: SideInput, findings: SideInput, figures: list[Any]
) -> str:
    """report.md: one page (under 400 lines) a reviewer reads; the full tables are in details.md."""
    rows = data.measured_rows(loaded.docs)
    by_name = {f.name: f for f in figures}
    links = (
        f"The same content with sortable, filterable tables: [{HTML}]({HTML}). Every cell, verdict and finding: "
        f"[{DETAILS}]({DETAILS})."
    )
    parts = [
        _head(results_dir, loaded, "qkit report") + "\n\n" + links,
        section_glance(loaded, rows, verdicts, findings, figures),
        section_claims(verdicts, by_name.get("published_vs_measured"), out_dir, results_dir, len(loaded.docs)),
        section_audit(findings, out_dir),
        section_environment(loaded.docs),
        section_study_matrix(rows),
        section_figures(figures, out_dir, skip=("published_vs_measured",)),
        section_not_ok_short(loaded.docs, loaded.corrupt),
    ]
    return "\n\n".join(parts) + "\n"


def render_details(results_dir: Path, out_dir: Path, loaded: Any, verdicts: SideInput, findings: SideInput) -> str:
    """details.md: every measured cell, every verdict, every finding, every skipped cell, the method."""
    rows = data.measured_rows(loaded.docs)
    matrix = section_matrix(rows).replace("## Measured matrix", "## Every measured cell", 1)
    verdict_part = section_verdicts(verdicts, None, out_dir, results_dir, len(loaded.docs)).replace(
        "## Published beside measured (validate)", "## Every verdict", 1
    )
    finding_part = section_findings(findings, out_dir).replace("## Audit findings", "## Every finding", 1)
    parts = [
        _head(results_dir, loaded, "qkit report, every table") + "\n\nThe one-page summary: [report.md](report.md).",
        matrix,
        verdict_part,
        finding_part,
        section_not_ok(loaded.docs, loaded.corrupt),
        section_method(loaded.docs),
    ]
    return "\n\n".join(parts) + "\n"


def default_findings_candidates(results_dir: Path) -> list[Path]:
    # `make reproduce` writes findings beside the results; a standalone `qkit audit` at the root.
    return [results_dir / "findings.json", results_dir.parent / "findings.json"]


def build_report(
    results_dir: Path, out_dir: Path | None = None, verdicts_file: Path | None = None, findings_file: Path | None = None
) -> ReportResult:
    """Load, draw and write ``<out_dir>/report.md``; returns what was written."""
    from kit.documents import atomic_write_text
    from kit.report.figures import draw_all
    from kit.results.store import load_results

    results_dir = Path(results_dir)
    out_dir = Path(out_dir) if out_dir else results_dir / "report"
    loaded = load_results(results_dir)
    verdicts = read_side_input(
        "validate",
        [Path(verdicts_file)] if verdicts_file else [results_dir / "verdicts.json"],
        "verdicts",
        data.verdict_list,
    )
    findings = read_side_input(
        "audit",
        [Path(findings_file)] if findings_file else default_findings_candidates(results_dir),
        "findings",
        data.finding_list,
    )
    from kit.report.html import render_html

    figures = draw_all(loaded.docs, verdicts.items, out_dir)
    target = out_dir / "report.md"
    atomic_write_text(out_dir / DETAILS, render_details(results_dir, out_dir, loaded, verdicts, findings))
    page = render(results_dir, out_dir, loaded, verdicts, findings, figures)
    atomic_write_text(out_dir / HTML, render_html(page, results_dir, loaded, verdicts, findings, figures))
    atomic_write_text(target, page)
    return ReportResult(
        target, figures, len(loaded.docs), loaded.corrupt, verdicts, findings, out_dir / DETAILS, out_dir / HTML
    )
