"""Statistics and tolerance arithmetic: allowed intervals, pass/fail/inconclusive, aggregate statistics."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, cast

Z95 = 1.96


def allowed_interval(claimed: float, kind: str, tol: float) -> tuple[float, float]:
    if kind == "relative":
        half = abs(claimed) * tol
    elif kind == "absolute":
        half = tol
    else:
        half = 0.0
    return (claimed - half, claimed + half)


def classify(value: float, ci: tuple[float, float] | None, low: float, high: float) -> str:
    """pass/fail by the point value; inconclusive when the CI reaches across a tolerance edge."""
    inside = low <= value <= high
    if ci is not None:
        ci_lo, ci_hi = min(ci), max(ci)
        straddles = (ci_lo < low <= ci_hi) or (ci_lo <= high < ci_hi)
        if straddles:
            return "inconclusive"
    return "pass" if inside else "fail"


def one_sided(value: float, ci: tuple[float, float] | None, edge: float, at_least: bool) -> str:
    """pass/fail against one edge (``value >= edge`` or ``<=``); inconclusive when the CI contains it."""
    ok = value >= edge if at_least else value <= edge
    if ci is not None and min(ci) < edge < max(ci):
        return "inconclusive"
    return "pass" if ok else "fail"


_SEVERITY = {"fail": 2, "inconclusive": 1, "pass": 0}


def worst(*outcomes: str) -> str:
    return max(outcomes, key=_SEVERITY.__getitem__)


def percentile(values: list[float], q: float, method: str) -> float:
    import numpy as np  # only aggregates with a median or percentile need it

    # ``method`` comes from a claim file (checked by its schema); numpy types it as a Literal.
    return float(np.percentile(np.asarray(values, dtype=float), q, method=cast(Any, method)))


def std(values: list[float], ddof: int) -> float:
    n = len(values)
    if n - ddof <= 0:
        return 0.0
    mean = sum(values) / n
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (n - ddof))


def median(values: list[float]) -> float:
    return percentile(values, 50, "linear")


def statistic(kind: str, params: dict[str, Any]) -> tuple[Callable[[list[float]], float], bool]:
    """The statistic and whether it is monotone in every value (so a CI can be pushed through it)."""
    table: dict[str, tuple[Callable[[list[float]], float], bool]] = {
        "mean": (lambda v: sum(v) / len(v), True),
        "median": (median, True),
        "min": (min, True),
        "max": (max, True),
        "at_least": (min, True),
        "at_most": (max, True),
        "std": (lambda v: std(v, int(params.get("ddof", 1))), False),
        "percentile": (
            lambda v: percentile(v, float(params.get("percentile", 50)), str(params.get("method", "linear"))),
            True,
        ),
    }
    return table[kind]
