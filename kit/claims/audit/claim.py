"""The claim model the rules read: ``AuditClaim`` (one normalised, read-only claim), ``FileInfo``
(one seed file's metadata) and ``Study`` (all claims, indexed), built from whatever the caller holds
(a ``ClaimSet``, claim-file documents, or a flat list of claims), plus the small lookups every rule
family shares (``path_key``, ``is_baseline``, ``normalize_name``).

Part of the rules' toolbox: imports nothing from the audit but ``numbers``.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kit.claims.audit.numbers import Iv, rounding_half_width
from kit.errors import BadInput

BASELINE_PATHS = ("torch-fp32", "ort-fp32")
BASELINE_LABELS = ("fp32", "original", "baseline", "float32")


class AuditInputError(BadInput, ValueError):
    """The claims given to the audit are malformed (one line; the CLI exits 2 on any ``BadInput``)."""


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
