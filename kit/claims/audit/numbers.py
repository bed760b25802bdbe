"""Numbers as published: intervals on their printed rounding, and how evidence lines print them.

Numbers published in tables are rounded. Every comparison in the audit uses *interval arithmetic
on the published rounding*: a value printed as ``2.50`` stands for [2.495, 2.505], ``25.59`` for
[25.585, 25.595], so ``25.59 / 10.24`` is [2.4985, 2.4995] and the published speedup ``2.50``
holds. A finding is only raised when the intervals do not meet (plus any extra tolerance a rule
states). The half-width of a value is read from the figure as printed in the claim's ``text``
(``2.50x`` has two decimals even though JSON stores 2.5); failing that, from the JSON number.

Part of the rules' toolbox: imports nothing from the audit.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

# Relative gap (beyond rounding) above which a wrong derived number is an error rather than a
# warning: below 2% it is most likely a slip in the last digit, above it the number is wrong.
ERROR_REL_GAP = 0.02


@dataclass(frozen=True)
class Iv:
    """A closed interval [lo, hi]: a published number together with its rounding."""

    lo: float
    hi: float

    @staticmethod
    def point(x: float) -> Iv:
        return Iv(x, x)

    @staticmethod
    def around(x: float, half: float) -> Iv:
        return Iv(x - half, x + half)

    @property
    def mid(self) -> float:
        return (self.lo + self.hi) / 2

    @property
    def half(self) -> float:
        return (self.hi - self.lo) / 2

    def __add__(self, o: Iv | float) -> Iv:
        o = _iv(o)
        return Iv(self.lo + o.lo, self.hi + o.hi)

    __radd__ = __add__

    def __sub__(self, o: Iv | float) -> Iv:
        o = _iv(o)
        return Iv(self.lo - o.hi, self.hi - o.lo)

    def __rsub__(self, o: float) -> Iv:
        return _iv(o) - self

    def __neg__(self) -> Iv:
        return Iv(-self.hi, -self.lo)

    def __mul__(self, o: Iv | float) -> Iv:
        o = _iv(o)
        p = (self.lo * o.lo, self.lo * o.hi, self.hi * o.lo, self.hi * o.hi)
        return Iv(min(p), max(p))

    __rmul__ = __mul__

    def __truediv__(self, o: Iv | float) -> Iv:
        o = _iv(o)
        if o.lo <= 0 <= o.hi:
            raise ZeroDivisionError("interval division by an interval containing 0")
        return self * Iv(1 / o.hi, 1 / o.lo)

    def __rtruediv__(self, o: float) -> Iv:
        return _iv(o) / self

    def widen(self, rel: float = 0.0, abs_: float = 0.0) -> Iv:
        w = max(abs(self.lo), abs(self.hi)) * rel + abs_
        return Iv(self.lo - w, self.hi + w)

    def hull(self, o: Iv) -> Iv:
        return Iv(min(self.lo, o.lo), max(self.hi, o.hi))

    def meets(self, o: Iv, slack: float = 1e-9) -> bool:
        return self.lo <= o.hi + slack and o.lo <= self.hi + slack

    def gap(self, o: Iv) -> float:
        """Distance between the intervals (0 when they meet)."""
        return max(0.0, self.lo - o.hi, o.lo - self.hi)

    def rel_gap(self, o: Iv) -> float:
        scale = max(abs(self.mid), abs(o.mid), 1e-12)
        return self.gap(o) / scale

    def __str__(self) -> str:
        return f"[{fmt(self.lo)}, {fmt(self.hi)}]"


def _iv(x: Iv | float) -> Iv:
    return x if isinstance(x, Iv) else Iv(float(x), float(x))


def fmt(x: float | int | None, digits: int = 4) -> str:
    """A number for evidence lines: enough digits to show the arithmetic, no float noise."""
    if x is None:
        return "n/a"
    if isinstance(x, bool):
        return str(x)
    x = float(x)
    if not math.isfinite(x):
        return str(x)
    if x != 0 and (abs(x) >= 1e7 or abs(x) < 1e-3):
        return f"{x:.{digits}g}"
    if abs(x) >= 1000:
        return f"{x:,.2f}".rstrip("0").rstrip(".")
    s = f"{x:.{digits}f}".rstrip("0").rstrip(".")
    return s if s not in ("-0", "") else "0"


def gap_severity(a: Iv, b: Iv, error_rel: float = ERROR_REL_GAP) -> str:
    """error when two numbers that should agree differ by more than ``error_rel`` beyond rounding."""
    return "error" if a.rel_gap(b) > error_rel else "warning"


_NUM_RE = re.compile(r"(?<![\w.])[-+−]?\d[\d,]*(?:\.\d+)?")
_SCALES = (1.0, 1e-2, 1e2, 1e3, 1e6, 1e9, 1e-3, 1e-6)


def _token_value(token: str) -> tuple[float, int] | None:
    tok = token.replace(",", "").replace("−", "-")
    try:
        x = float(tok)
    except ValueError:
        return None
    decimals = len(tok.split(".", 1)[1]) if "." in tok else 0
    return x, decimals


def rounding_half_width(value: float, text: str | None = None) -> float:
    """Half a unit in the last printed place of ``value``.

    The figure is looked up in ``text`` (the claim's words as published) so trailing zeros count
    (``2.50x`` -> 0.005); a figure printed with a unit suffix (``632M``, ``65.8%`` of a fraction)
    is matched through the scale. Failing that, the JSON number's own digits: floats by their
    shortest repr, integers >= 1000 by their trailing zeros (300000000 -> 5e7), which can only
    make the interval wider, never narrower, than the published one.
    """
    if text:
        for m in _NUM_RE.finditer(text):
            parsed = _token_value(m.group())
            if parsed is None:
                continue
            x, decimals = parsed
            for scale in _SCALES:
                if math.isclose(abs(x) * scale, abs(value), rel_tol=1e-9, abs_tol=1e-12):
                    half = 0.5 * 10.0 ** (-decimals) * scale
                    if abs(value) >= 1000 and float(value).is_integer() and set(m.group().split(".")[-1]) <= {"0"}:
                        # "86000000.0" is a float print of a rounded count: its zeros carry no
                        # precision, so take the trailing-zero reading (wider, never narrower)
                        half = max(half, _trailing_zero_half(int(value)))
                    return half
    if isinstance(value, float) and not value.is_integer():
        r = repr(value)
        if "e" in r or "E" in r:
            return abs(value) * 5e-16
        return 0.5 * 10.0 ** (-len(r.split(".", 1)[1]))
    if abs(value) >= 1000:
        return _trailing_zero_half(int(value))
    return 0.5


def _trailing_zero_half(iv: int) -> float:
    zeros = 0
    while iv != 0 and iv % 10 == 0:
        iv //= 10
        zeros += 1
    return 0.5 * 10.0**zeros
