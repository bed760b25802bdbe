"""What a reviewer reads first: validate's verdicts on one screen.

``qkit validate`` prints this by default (``--all`` prints every verdict): the counts per
comparability class and verdict, one line per ``error``, ``fail`` and ``inconclusive``, and the
claims that could not be judged, grouped by what would let them be judged ("760 need a CUDA GPU:
run `make reproduce DEVICES=cuda` on one"). Everything here works on verdict *dicts* (a
`Verdict.to_dict()` or an entry of the verdicts JSON), so the report renders the same groups from
the file validate wrote.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kit.claims.validate.values import fmt
from kit.claims.validate.verdict import CLASSES, VERDICTS

# The verdicts a reviewer must read one by one; the others are counted and grouped.
LISTED: tuple[str, ...] = ("error", "fail", "inconclusive")
UNJUDGED: tuple[str, ...] = ("not-measured", "not-comparable", "unsupported")
WIDTH = 160


@dataclass
class Blocker:
    """Claims that could not be judged here, for one reason, and what would let them be judged."""

    key: str
    need: str  # what is missing, e.g. "a CUDA GPU"
    action: str  # what to run, e.g. "run `make reproduce DEVICES=cuda` on one"
    claims: list[str] = field(default_factory=list)
    by_verdict: Counter[str] = field(default_factory=Counter)

    def line(self) -> str:
        kinds = ", ".join(f"{n} {v}" for v, n in self.by_verdict.most_common())
        if self.key == "unsupported":
            return f"{len(self.claims)} cannot be a measurement ({self.need}): {self.action}"
        return f"{len(self.claims)} need {self.need}: {self.action} ({kinds})"


_MODEL = re.compile(r"--model (\S+)")
_STACK = (
    "stack",
    "the study's software stack",
    "`make docker-reproduce` (docker/Dockerfile.cuda: CUDA 12.1, PyTorch 2.1) on a GPU",
)


def blocker_of(v: dict[str, Any]) -> tuple[str, str, str]:
    """(key, need, action) for a verdict that is not-measured, not-comparable or unsupported."""
    verdict, reason = str(v.get("verdict")), str(v.get("reason") or "")
    metric = str(v.get("metric") or "")
    if verdict == "unsupported":
        return (
            "unsupported",
            "placeholders, labels, the study's own files, estimates",
            "no run can judge them; `qkit audit` checks them against each other and against physics",
        )
    if "qkit accuracy" in reason:
        models = sorted(set(_MODEL.findall(reason))) or ["M"]
        return (
            "accuracy",
            "the checkpoint's weights and a labelled image folder",
            f"`qkit accuracy --model {models[0]} --weights DIR --dataset DIR`",
        )
    if verdict == "not-comparable":
        hardware = v.get("hardware") if isinstance(v.get("hardware"), dict) else None
        claimed = (hardware or {}).get("claimed") or (v.get("claimed") if metric == "hardware" else None)
        if claimed:
            return (
                f"hardware:{claimed}",
                f"the claimed hardware ({claimed})",
                "run `make reproduce` on one; ours is shown beside theirs, not judged",
            )
        if metric == "software_version":
            return _STACK
        return ("other-comparable", "the study's conditions", "see `qkit validate --all --only not-comparable`")
    if "CUDA unavailable" in reason or " on cuda " in reason or "cuda version" in reason:
        return ("cuda", "a CUDA GPU", "run `make reproduce DEVICES=cuda` on one")
    if metric == "software_version":  # a package our environment does not have
        return _STACK
    if "rerun the cell" in reason:  # measured by an older kit, without what this claim reads
        return (
            "rerun",
            "cells measured again by this kit (theirs predate what the claim reads)",
            "`qkit reproduce --force --models M --paths P` on those cells; `qkit validate --all` names them",
        )
    return (
        "other-missing",
        "cells this run did not measure",
        "rerun `make reproduce` (it resumes); `qkit validate --all --only not-measured` gives each reason",
    )


def blockers(verdicts: Iterable[dict[str, Any]]) -> list[Blocker]:
    """The unjudged claims grouped by what would let them be judged, biggest group first."""
    groups: dict[str, Blocker] = {}
    for v in verdicts:
        if v.get("verdict") not in UNJUDGED:
            continue
        key, need, action = blocker_of(v)
        b = groups.setdefault(key, Blocker(key, need, action))
        b.claims.append(str(v.get("claim_id")))
        b.by_verdict[str(v.get("verdict"))] += 1
    # "no measurement at all" last: nothing can be done about those.
    return sorted(groups.values(), key=lambda b: (b.key == "unsupported", -len(b.claims), b.key))


def _with_unit(value: Any, unit: str) -> str:
    text = fmt(value)
    return f"{text} {unit}" if unit and unit != "count" and isinstance(value, (int, float)) else text


def tolerance_text(v: dict[str, Any]) -> str:
    allowed = v.get("allowed")
    if isinstance(allowed, list) and len(allowed) == 2 and all(isinstance(x, (int, float)) for x in allowed):
        return f"allowed {fmt(allowed[0])}..{fmt(allowed[1])}"
    tol: dict[str, Any] = v["tolerance"] if isinstance(v.get("tolerance"), dict) else {}
    kind, value = tol.get("kind"), tol.get("value")
    if kind == "relative" and isinstance(value, (int, float)):
        return f"tolerance ±{value * 100:.3g}%"
    if kind == "absolute" and isinstance(value, (int, float)):
        return f"tolerance ±{fmt(value)}"
    return f"tolerance {kind or '-'}"


def why_text(v: dict[str, Any]) -> str:
    """The reason in a few words: the deviation, or the CI that straddles the edge."""
    reason = str(v.get("reason") or "")
    m = re.search(r"deviation [^,;(]*\(([+-][\d.]+%)\)", reason)
    dev = f"off by {m.group(1)}" if m else ""
    if v.get("summary"):  # judged on several machines: where it holds first
        dev = f"[{v['summary']}] {dev}".strip()
    if v.get("verdict") == "inconclusive":
        ci = v.get("ci95")
        ci_text = f"CI {fmt(ci)} " if isinstance(ci, list) else "CI "
        return "; ".join(x for x in (dev, f"{ci_text}straddles the tolerance edge") if x)
    if v.get("verdict") == "error":
        return reason
    return dev or reason.split(" (")[0]


def verdict_line(v: dict[str, Any], width: int = WIDTH) -> str:
    """One fail / inconclusive / error: claim, claimed, measured [CI], tolerance, why."""
    unit = str(v.get("unit") or "")
    measured = "-" if v.get("measured") is None else _with_unit(v.get("measured"), unit)
    parts = [
        f"{v.get('verdict')!s:<12} {v.get('claim_id')}",
        f"claimed {_with_unit(v.get('claimed'), unit)}",
        f"measured {measured}",
        tolerance_text(v),
        why_text(v),
    ]
    return clip("  ".join(p for p in parts if p), width)


def clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 1)] + "…"


def class_table(verdicts: Sequence[dict[str, Any]]) -> list[str]:
    """Counts per comparability class (rows) and verdict (columns), verdicts that occur only."""
    present = [v for v in VERDICTS if any(x.get("verdict") == v for x in verdicts)]
    counts = Counter((str(x.get("comparability")), str(x.get("verdict"))) for x in verdicts)
    classes = [c for c in CLASSES if any(x.get("comparability") == c for x in verdicts)]
    classes += sorted({str(x.get("comparability")) for x in verdicts} - set(classes))
    w = max([len("class"), *(len(c) for c in classes), len("all")])
    cols = [max(len(v), 5) for v in present]
    head = f"  {'class':<{w}}" + "".join(f"  {v:>{c}}" for v, c in zip(present, cols)) + f"  {'all':>5}"
    lines = [head]
    for cls in [*classes, "all"]:
        row = [sum(n for (c, vv), n in counts.items() if vv == v and (cls == "all" or c == cls)) for v in present]
        lines.append(f"  {cls:<{w}}" + "".join(f"  {n:>{c}}" for n, c in zip(row, cols)) + f"  {sum(row):>5}")
    return lines


def screen(
    verdicts: Sequence[dict[str, Any]],
    *,
    summary_line: str,
    verdict_file: str | None,
    head: Sequence[str] = (),
    width: int = WIDTH,
    max_listed: int = 30,
) -> list[str]:
    """validate on one screen (≤ 60 lines on the reference run); ``head``: lines printed first."""
    lines = list(head)
    lines += ["", "verdicts per comparability class:", *class_table(verdicts)]
    listed = [v for name in LISTED for v in verdicts if v.get("verdict") == name]
    if listed:
        c = Counter(str(v.get("verdict")) for v in listed)
        lines += ["", ", ".join(f"{c[k]} {k}" for k in LISTED if c[k]) + " (claim, claimed, measured, tolerance, why):"]
        lines += ["  " + verdict_line(v, width - 2) for v in listed[:max_listed]]
        if len(listed) > max_listed:
            lines.append(f"  ... and {len(listed) - max_listed} more: `qkit validate --all --only fail`")
    elif any(v.get("verdict") == "pass" for v in verdicts):
        lines += ["", "no claim failed or was inconclusive"]
    groups = blockers(verdicts)
    if groups:
        n = sum(len(b.claims) for b in groups)
        lines += ["", f"{n} claims could not be judged here:"]
        lines += ["  " + clip(b.line(), width - 2) for b in groups]
    lines.append("")
    lines.append(summary_line)
    if verdict_file:
        lines.append(f"every verdict: {verdict_file} (or `qkit validate --all`)")
    else:
        lines.append("every verdict: `qkit validate --all`, or `--json FILE` to keep them")
    return lines


def markdown(verdicts: Sequence[dict[str, Any]], *, summary_line: str, verdict_file: str | None) -> str:
    """The same screen as markdown, for a pull request (``qkit validate --format md``)."""
    out = [f"**{summary_line}**", "", "| class | " + " | ".join(VERDICTS) + " | all |"]
    out.append("|---|" + "---:|" * (len(VERDICTS) + 1))
    for cls in [*CLASSES, "all"]:
        sub = [v for v in verdicts if cls == "all" or v.get("comparability") == cls]
        c = Counter(str(v.get("verdict")) for v in sub)
        out.append(f"| {cls} | " + " | ".join(str(c.get(v, 0)) for v in VERDICTS) + f" | {len(sub)} |")
    listed = [v for name in LISTED for v in verdicts if v.get("verdict") == name]
    if listed:
        out += ["", "| verdict | claim | claimed | measured | tolerance | why |", "|---|---|---:|---:|---|---|"]
        for v in listed:
            unit = str(v.get("unit") or "")
            measured = "-" if v.get("measured") is None else _with_unit(v.get("measured"), unit)
            cells = [
                str(v.get("verdict")),
                f"`{v.get('claim_id')}`",
                _with_unit(v.get("claimed"), unit),
                measured,
                tolerance_text(v),
                why_text(v),
            ]
            out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    groups = blockers(verdicts)
    if groups:
        out += ["", "Could not be judged here:", ""]
        out += [f"- {b.line()}" for b in groups]
    if verdict_file:
        out += ["", f"Every verdict: `{verdict_file}`."]
    return "\n".join(out) + "\n"
