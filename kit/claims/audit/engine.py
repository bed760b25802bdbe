"""The audit engine: a registry of small rule functions, a runner that runs them all, and the
normalised view of the claims (``Study``) the rules read.

Shape borrowed from the MLPerf submission checker: every rule runs, every finding is kept, and
a rule that raises becomes an error finding naming the rule (never a traceback), so one broken
rule never hides the others.

Numbers published in tables are rounded. Every comparison here uses *interval arithmetic on the
published rounding*: a value printed as ``2.50`` stands for [2.495, 2.505], ``25.59`` for
[25.585, 25.595], so ``25.59 / 10.24`` is [2.4985, 2.4995] and the published speedup ``2.50``
holds. A finding is only raised when the intervals do not meet (plus any extra tolerance a rule
states). The half-width of a value is read from the figure as printed in the claim's ``text``
(``2.50x`` has two decimals even though JSON stores 2.5); failing that, from the JSON number.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

SEVERITIES: tuple[str, ...] = ("error", "warning", "info")
FAMILIES: tuple[str, ...] = (
    "arithmetic",
    "statistics",
    "consistency",
    "physics",
    "method",
    "provenance",
    "placeholders",
)
# Relative gap (beyond rounding) above which a wrong derived number is an error rather than a
# warning: below 2% it is most likely a slip in the last digit, above it the number is wrong.
ERROR_REL_GAP = 0.02

BASELINE_PATHS = ("torch-fp32", "ort-fp32")
BASELINE_LABELS = ("fp32", "original", "baseline", "float32")


class AuditInputError(ValueError):
    """The claims given to the audit are malformed (one line, for exit code 2)."""


# ------------------------------------------------------------------------------------ intervals


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


# -------------------------------------------------------------------------------------- claims


def _plain(obj: Any, depth: int = 0) -> Any:
    """Dataclasses, pydantic-ish objects and mappings -> plain dicts/lists (for any ClaimSet)."""
    if depth > 20:
        raise AuditInputError("claims nest too deeply")
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    if isinstance(obj, Mapping):
        return {str(k): _plain(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v, depth + 1) for v in obj]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _plain(getattr(obj, f.name), depth + 1) for f in dataclasses.fields(obj)}
    for meth in ("to_dict", "model_dump", "as_dict"):
        fn = getattr(obj, meth, None)
        if callable(fn):
            return _plain(fn(), depth + 1)
    if hasattr(obj, "__dict__"):
        return {k: _plain(v, depth + 1) for k, v in vars(obj).items() if not k.startswith("_")}
    if isinstance(obj, (set, frozenset)):
        return [_plain(v, depth + 1) for v in sorted(obj, key=str)]
    return str(obj)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))


@dataclass(frozen=True)
class AuditClaim:
    """One claim as the rules see it (a read-only, normalised copy of the expected/ claim)."""

    id: str
    source_file: str
    section: str
    text: str
    metric: str
    value: Any
    unit: str
    subject: Mapping[str, Any]
    published_label: str | None
    kit_path: str | None
    device: str | None
    batch_size: int | None
    supported: bool
    unsupported_reason: str | None
    table: str | None
    raw: Mapping[str, Any] = field(repr=False, compare=False, hash=False)

    @property
    def kind(self) -> str:
        return str(self.subject.get("kind", ""))

    @property
    def model(self) -> str | None:
        m = self.subject.get("model")
        return m if isinstance(m, str) else None

    @property
    def aggregate(self) -> str | None:
        a = self.subject.get("aggregate")
        return a if isinstance(a, str) else None

    @property
    def over(self) -> Mapping[str, Any]:
        o = self.subject.get("over")
        return o if isinstance(o, Mapping) else {}

    @property
    def how(self) -> str:
        h = self.subject.get("how")
        return h if isinstance(h, str) else ""

    @property
    def seed(self) -> str:
        return self.source_file.split("_", 1)[0]

    @property
    def is_number(self) -> bool:
        return _is_number(self.value)

    @property
    def num(self) -> float:
        if not self.is_number:
            raise TypeError(f"claim {self.id} value {self.value!r} is not a number")
        return float(self.value)

    @property
    def iv(self) -> Iv:
        """The published value as an interval of its rounding."""
        return Iv.around(self.num, rounding_half_width(self.value, self.text))

    def iv_of(self, x: float) -> Iv:
        """Interval of one element of a list value (ranges), by the same rounding rule."""
        return Iv.around(float(x), rounding_half_width(x, self.text))

    @property
    def where(self) -> str:
        return f"{self.id} ({self.source_file} / {self.section})"

    @property
    def location(self) -> str:
        """Table (or section) the claim sits in: cells of one printed table share it."""
        return f"{self.source_file}::{self.table or self.section}"

    def mentions(self, *words: str) -> bool:
        blob = " ".join(str(x) for x in (self.text, self.section, self.id, self.metric)).lower()
        return any(w.lower() in blob for w in words)


@dataclass(frozen=True)
class FileInfo:
    source_file: str
    title: str
    hardware: Mapping[str, Any]

    @property
    def gpu(self) -> str | None:
        g = self.hardware.get("gpu") if isinstance(self.hardware, Mapping) else None
        return g if isinstance(g, str) and g.strip() else None


def _claim_from(raw: Mapping[str, Any], default_source: str | None, position: str) -> AuditClaim:
    def need_str(key: str, allow_empty: bool = False) -> str:
        v = raw.get(key)
        if not isinstance(v, str) or (not allow_empty and not v.strip()):
            raise AuditInputError(f"{position}: field {key!r} must be a non-empty string, got {v!r}"[:300])
        return v

    cid = need_str("id")
    position = f"claim {cid!r}"
    metric = need_str("metric")
    source = raw.get("source_file", default_source)
    if isinstance(raw.get("source"), Mapping):  # tolerate {"source": {"file": .., "section": ..}}
        source = raw["source"].get("file", source)
    if not isinstance(source, str) or not source.strip():
        raise AuditInputError(f"{position}: no source_file (seed file) given")
    subject = raw.get("subject")
    if not isinstance(subject, Mapping) or not isinstance(subject.get("kind"), str):
        raise AuditInputError(f"{position}: 'subject' must be an object with a string 'kind'")
    if "value" not in raw:
        raise AuditInputError(f"{position}: no 'value'")
    value = raw["value"]
    if isinstance(value, float) and not math.isfinite(value):
        raise AuditInputError(f"{position}: value is not finite")
    section = raw.get("section")
    if not isinstance(section, str):
        section = raw["source"].get("section", "") if isinstance(raw.get("source"), Mapping) else ""
    text = raw.get("text")
    bs = raw.get("batch_size")
    if bs is not None and not (isinstance(bs, int) and not isinstance(bs, bool)):
        raise AuditInputError(f"{position}: batch_size must be an integer or null, got {bs!r}"[:300])
    for key in ("published_label", "kit_path", "device", "unit", "unsupported_reason"):
        v = raw.get(key)
        if v is not None and not isinstance(v, str):
            raise AuditInputError(f"{position}: {key!r} must be a string or null, got {v!r}"[:300])
    table_cell = raw.get("table_cell")
    table = table_cell.get("table") if isinstance(table_cell, Mapping) else None
    supported = raw.get("supported", True)
    return AuditClaim(
        id=cid,
        source_file=source,
        section=section,
        text=text if isinstance(text, str) else "",
        metric=metric,
        value=value,
        unit=raw.get("unit") or "",
        subject=subject,
        published_label=raw.get("published_label"),
        kit_path=raw.get("kit_path"),
        device=raw.get("device"),
        batch_size=bs,
        supported=supported if isinstance(supported, bool) else True,
        unsupported_reason=raw.get("unsupported_reason"),
        table=table if isinstance(table, str) else None,
        raw=raw,
    )


class Study:
    """All claims, indexed for the rules. Build with ``Study.from_input``."""

    def __init__(self, claims: Sequence[AuditClaim], files: Mapping[str, FileInfo]) -> None:
        self.claims: tuple[AuditClaim, ...] = tuple(claims)
        self.files: dict[str, FileInfo] = dict(files)
        for c in self.claims:
            self.files.setdefault(c.source_file, FileInfo(c.source_file, "", {}))
        self._by_metric: dict[str, list[AuditClaim]] = defaultdict(list)
        for c in self.claims:
            self._by_metric[c.metric].append(c)
        self.by_id: dict[str, AuditClaim] = {c.id: c for c in self.claims}

    # ---------------------------------------------------------------------------- building
    @classmethod
    def from_input(cls, claims: Any) -> Study:
        """Accepts a ``ClaimSet`` (``.files`` of claim files), claim-file documents (one or a list),
        or a flat list of claims that carry their ``source_file``."""
        if isinstance(claims, Study):
            return claims
        docs: list[Any] = []
        loose: list[Any] = []
        files = None if isinstance(claims, Mapping) else getattr(claims, "files", None)
        if files is not None and not callable(files):
            docs = list(files.values() if isinstance(files, Mapping) else files)
        elif isinstance(claims, Mapping):
            docs = [claims]
        elif isinstance(claims, (str, bytes)) or not isinstance(claims, Iterable):
            raise AuditInputError(f"cannot read claims from a {type(claims).__name__}")
        else:
            for item in claims:
                plain = _plain(item)
                (docs if isinstance(plain, Mapping) and "claims" in plain else loose).append(plain)

        out: list[AuditClaim] = []
        files_meta: dict[str, FileInfo] = {}
        for d in docs:
            doc = _plain(d)
            if not isinstance(doc, Mapping):
                raise AuditInputError("a claim-file document is not an object")
            info = _file_info(doc)
            files_meta.setdefault(info.source_file, info)
            items = doc.get("claims")
            if not isinstance(items, list):
                raise AuditInputError(f"{info.source_file}: 'claims' must be a list")
            for i, item in enumerate(items):
                raw = _plain(item)
                if not isinstance(raw, Mapping):
                    raise AuditInputError(f"{info.source_file} claim #{i}: not an object")
                out.append(_claim_from(raw, info.source_file, f"{info.source_file} claim #{i}"))
        for i, raw in enumerate(loose):
            if not isinstance(raw, Mapping):
                raise AuditInputError(f"claim #{i}: not an object")
            c = _claim_from(raw, None, f"claim #{i}")
            hw = raw.get("hardware") or raw.get("published_hardware")
            if isinstance(hw, Mapping) and hw:  # loose claims may carry their file's hardware
                files_meta.setdefault(c.source_file, FileInfo(c.source_file, "", hw))
            out.append(c)
        seen: set[str] = set()
        for c in out:
            if c.id in seen:
                raise AuditInputError(f"duplicate claim id {c.id!r}")
            seen.add(c.id)
        return cls(out, files_meta)

    # ----------------------------------------------------------------------------- lookups
    def metric(self, *metrics: str) -> list[AuditClaim]:
        out: list[AuditClaim] = []
        for m in metrics:
            out.extend(self._by_metric.get(m, ()))
        return out

    def metrics(self) -> list[str]:
        return sorted(self._by_metric)

    def cells(
        self,
        metric: str,
        model: str | None = None,
        kit_path: str | None = None,
        source_file: str | None = None,
        numeric: bool = True,
    ) -> list[AuditClaim]:
        out = []
        for c in self._by_metric.get(metric, ()):
            if c.kind != "cell":
                continue
            if model is not None and c.model != model:
                continue
            if kit_path is not None and path_key(c) != kit_path:
                continue
            if source_file is not None and c.source_file != source_file:
                continue
            if numeric and not c.is_number:
                continue
            out.append(c)
        return out

    def hardware_of(self, source_file: str) -> str | None:
        info = self.files.get(source_file)
        return info.gpu if info else None

    def group_of(self, source_file: str) -> str:
        """Files reporting the same hardware describe the same study; numbers compare only within
        a group (seed 004, a T4 study of one model, is not the RTX 4070 Ti SUPER study)."""
        gpu = self.hardware_of(source_file)
        return normalize_name(gpu) if gpu else f"file:{source_file}"

    def same_group(self, a: AuditClaim, b: AuditClaim) -> bool:
        return self.group_of(a.source_file) == self.group_of(b.source_file)


def _file_info(d: Mapping[str, Any]) -> FileInfo:
    src = d.get("source_file")
    if not isinstance(src, str) or not src.strip():
        raise AuditInputError("a claim file has no 'source_file'")
    title = d.get("title")
    hw = d.get("published_hardware")
    return FileInfo(src, title if isinstance(title, str) else "", hw if isinstance(hw, Mapping) else {})


def normalize_name(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", "", s.lower())


def path_key(c: AuditClaim) -> str | None:
    """The claim's path: ``kit_path``, or failing that its published label."""
    if c.kit_path:
        return c.kit_path
    return c.published_label


def is_baseline(c: AuditClaim) -> bool:
    if c.kit_path in BASELINE_PATHS:
        return True
    label = (c.published_label or "").lower()
    return c.kit_path is None and label in BASELINE_LABELS


# ------------------------------------------------------------------------------ rules, findings


@dataclass(frozen=True)
class ClaimRef:
    id: str
    source_file: str
    section: str
    text: str

    @staticmethod
    def of(c: AuditClaim) -> ClaimRef:
        return ClaimRef(c.id, c.source_file, c.section, c.text[:200])


@dataclass
class Hit:
    """What a rule function yields; the runner turns it into a ``Finding``."""

    message: str
    evidence: str
    claims: Sequence[AuditClaim] = ()
    severity: str | None = None  # None: the rule's default


@dataclass(frozen=True)
class Finding:
    rule: str
    family: str
    severity: str
    message: str
    evidence: str
    claims: tuple[ClaimRef, ...]
    convention: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "family": self.family,
            "severity": self.severity,
            "message": self.message,
            "evidence": self.evidence,
            "convention": self.convention,
            "claims": [dataclasses.asdict(r) for r in self.claims],
        }


RuleFunc = Callable[[Study], Iterable[Hit]]


@dataclass(frozen=True)
class Rule:
    id: str
    family: str
    severity: str
    convention: str
    func: RuleFunc
    summary: str

    def to_dict(self) -> dict[str, str]:
        return {
            "id": self.id,
            "family": self.family,
            "severity": self.severity,
            "summary": self.summary,
            "convention": self.convention,
        }


RULES: dict[str, Rule] = {}


def rule(rule_id: str, *, family: str, severity: str, convention: str = "") -> Callable[[RuleFunc], RuleFunc]:
    """Register ``func`` as rule ``rule_id``. ``severity`` is the default for its hits; the first
    line of the docstring is the rule's one-line summary; ``convention`` states rounding, std,
    percentile method, MB or MiB."""
    if family not in FAMILIES:
        raise ValueError(f"unknown rule family {family!r}")
    if severity not in SEVERITIES:
        raise ValueError(f"unknown severity {severity!r}")

    def deco(func: RuleFunc) -> RuleFunc:
        if rule_id in RULES and RULES[rule_id].func is not func:
            raise ValueError(f"rule {rule_id!r} registered twice")
        doc = (func.__doc__ or "").strip().splitlines()
        RULES[rule_id] = Rule(rule_id, family, severity, convention, func, doc[0] if doc else rule_id)
        return func

    return deco


def load_rules() -> dict[str, Rule]:
    """Import the rule modules (registration happens on import)."""
    from kit.claims.audit import (  # noqa: F401
        rules_arithmetic,
        rules_consistency,
        rules_method,
        rules_physics,
        rules_placeholders,
        rules_provenance,
        rules_statistics,
    )

    return RULES


_SEV_ORDER = {s: i for i, s in enumerate(SEVERITIES)}


def run_rules(study: Study, rules: Iterable[Rule]) -> list[Finding]:
    findings: list[Finding] = []
    for r in rules:
        try:
            hits: Iterator[Hit] | Iterable[Hit] = r.func(study)
            for hit in hits:
                sev = hit.severity or r.severity
                if sev not in SEVERITIES:
                    raise ValueError(f"rule yielded unknown severity {sev!r}")
                findings.append(
                    Finding(
                        rule=r.id,
                        family=r.family,
                        severity=sev,
                        message=" ".join(hit.message.split()),
                        evidence=hit.evidence,
                        claims=tuple(ClaimRef.of(c) for c in hit.claims),
                        convention=r.convention,
                    )
                )
        except Exception as exc:  # a broken rule is a finding, never a traceback
            findings.append(
                Finding(
                    rule=r.id,
                    family=r.family,
                    severity="error",
                    message=f"rule {r.id} raised {type(exc).__name__}: {exc}"[:400],
                    evidence="the rule could not finish; its other findings (if any) are above",
                    claims=(),
                    convention=r.convention,
                )
            )
    findings.sort(key=lambda f: (_SEV_ORDER[f.severity], f.family, f.rule))
    return findings


def run_audit(claims: Any, rules: Iterable[str] | None = None) -> list[Finding]:
    """Run every registered rule (or those named) over ``claims``; return all findings.

    ``claims``: a ``ClaimSet`` from ``kit.claims.load.load_claims``, claim-file documents, or a
    list of claim dicts. Raises ``AuditInputError`` (one line) when they are malformed.
    """
    study = Study.from_input(claims)
    registry = load_rules()
    if rules is None:
        selected = [registry[k] for k in sorted(registry)]
    else:
        unknown = [k for k in rules if k not in registry]
        if unknown:
            raise AuditInputError(f"unknown rule(s): {', '.join(unknown)}")
        selected = [registry[k] for k in rules]
    return run_rules(study, selected)


def counts(findings: Iterable[Finding]) -> dict[str, int]:
    out = dict.fromkeys(SEVERITIES, 0)
    for f in findings:
        out[f.severity] += 1
    return out
