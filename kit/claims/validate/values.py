"""What validate reads out of a document and how it prints a number: the vocabulary of the other modules.

A measured quantity is `Measured` (value, 95% CI, CV, the convention it follows, the cells it came
from) or `Missing` (why there is none). Documents come from other machines and old kit versions,
so every lookup tolerates absent keys and non-finite numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Measured:
    value: Any
    ci95: tuple[float, float] | None = None
    cv: float | None = None
    convention: str = ""
    cells: tuple[str, ...] = ()


@dataclass(frozen=True)
class Missing:
    reason: str


def num(x: Any) -> float | None:
    """A finite number, or None (JSON from Python may carry NaN/Infinity, and bools are ints)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return float(x) if math.isfinite(x) else None


def section(doc: dict[str, Any], key: str) -> dict[str, Any]:
    """``doc[key]`` when it is an object, else an empty one."""
    value = doc.get(key)
    return value if isinstance(value, dict) else {}


def dig(doc: Any, *keys: str) -> Any:
    """``doc[k1][k2]...``, or None where a level is absent or not an object."""
    for key in keys:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(key)
    return doc


def fmt(value: Any) -> str:
    """A value as verdict reasons and the table print it (4 significant digits, millions as M)."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, (int, float)):
        return f"{value:.4g}" if abs(value) < 1e6 else f"{value / 1e6:.5g}M"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(fmt(v) for v in value) + "]"
    return str(value)
