"""The verdict document (``kit/data/schemas/verdicts.schema.json``) and the counts it summarises.

Exit codes a run of verdicts asks for: 3 when any verdict is ``error`` (the kit failed while
judging), else 1 when a claim failed, else 0.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from kit import documents
from kit.claims.validate.verdict import CLASSES, VERDICTS, Verdict

EXIT_FAILED = 1
EXIT_ERROR = 3


@dataclass
class Summary:
    total: int
    by_verdict: dict[str, int]
    by_class: dict[str, dict[str, int]]
    by_file: dict[str, dict[str, int]]
    rejected: int = 0

    @property
    def failed(self) -> int:
        return self.by_verdict.get("fail", 0)

    @property
    def errors(self) -> int:
        return self.by_verdict.get("error", 0)

    @property
    def exit_code(self) -> int:
        if self.errors:
            return EXIT_ERROR
        return EXIT_FAILED if self.failed else 0

    def line(self) -> str:
        # `error` is named only when there is one: a clean run's line reads as it always has.
        counts = ", ".join(f"{self.by_verdict.get(v, 0)} {v}" for v in VERDICTS if v != "error" or self.errors)
        extra = f"; {self.rejected} result document(s) rejected" if self.rejected else ""
        return f"validate: {self.total} claims: {counts}{extra}"


def summarize(verdicts: list[Verdict], rejected: int = 0) -> Summary:
    by_verdict = Counter(v.verdict for v in verdicts)
    by_class: dict[str, dict[str, int]] = {
        c: dict(Counter(v.verdict for v in verdicts if v.comparability == c)) for c in CLASSES
    }
    by_file: dict[str, dict[str, int]] = defaultdict(dict)
    for v in verdicts:
        by_file[v.source_file][v.verdict] = by_file[v.source_file].get(v.verdict, 0) + 1
    return Summary(len(verdicts), {k: by_verdict.get(k, 0) for k in VERDICTS}, by_class, dict(by_file), rejected)


def verdict_document(
    verdicts: list[Verdict],
    summary: Summary,
    *,
    expected_dir: str,
    results_dir: str | None,
    rejected: list[tuple[str, str]],
    generated_utc: str,
    documents: int,
    machines: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The JSON verdict file (schema: verdicts.schema.json). ``machines``: `machine_list` of the results."""
    return {
        "schema_version": "1",
        "kind": "qkit-verdicts",
        "generated_utc": generated_utc,
        "expected_dir": expected_dir,
        "results_dir": results_dir,
        "results": {"documents": documents, "rejected": [{"file": f, "reason": r} for f, r in rejected]},
        "machines": list(machines or []),
        "summary": {
            "total": summary.total,
            "by_verdict": summary.by_verdict,
            "by_class": summary.by_class,
            "by_file": summary.by_file,
            "failed": summary.failed,
            "errors": summary.errors,
            "exit_code": summary.exit_code,
            "line": summary.line(),
        },
        "verdicts": [_jsonable(v.to_dict()) for v in verdicts],
    }


def _jsonable(obj: Any) -> Any:
    # Measured values come from documents that may hold NaN; JSON cannot.
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


def verdicts_problem(doc: Any) -> str | None:
    """Why ``doc`` is not a valid verdict document (one line), or None."""
    return documents.problem(doc, "verdicts")
