"""Claims a person can write: a CSV or YAML table of claims -> a claims document (and back).

One row per claim. Columns (CSV header, or the keys of each YAML row), `COLUMNS`:

``model, path, device, batch, metric, value, unit, tolerance, tolerance_reason, class, source``
(required: ``metric, value, tolerance, tolerance_reason, class, source``) and optional ``id``,
``text`` (the words as published; default: ``source``), ``label`` (the paper's own name for the
method), ``supported`` / ``unsupported_reason``, ``compare_device`` / ``device_note``, ``note``.

* ``tolerance``: ``10%`` (relative), ``0.5`` (absolute, in the claim's unit) or ``exact``;
* ``class``: ``portable``, ``relative`` or ``hardware-bound``;
* ``value``: a number, ``true``/``false``, or text (always text for `TEXT_METRICS`);
* a row without ``model`` is a statement about the study itself (``subject: study``).

The document's header (number, title, source, published hardware) comes from the YAML's
top-level keys or from the caller (``qkit claims import`` options). The result is checked by
the claims schema and `kit.claims.load`'s rules; every problem is `kit.errors.BadInput` naming
the table's line.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kit import documents
from kit.claims.load import ClaimsError, parse_claim_file
from kit.errors import BadInput

__all__ = ["COLUMNS", "REQUIRED", "Header", "import_table", "read_table", "table_rows", "write_table"]

COLUMNS: tuple[str, ...] = (
    "id",
    "model",
    "path",
    "device",
    "batch",
    "metric",
    "value",
    "unit",
    "tolerance",
    "tolerance_reason",
    "class",
    "source",
    "text",
    "label",
    "supported",
    "unsupported_reason",
    "compare_device",
    "device_note",
    "note",
)
REQUIRED: tuple[str, ...] = ("metric", "value", "tolerance", "tolerance_reason", "class", "source")
CLASSES = ("portable", "relative", "hardware-bound")
DEVICES = ("cpu", "cuda")
HEADER_KEYS = ("number", "title", "source", "hardware", "notes", "claims")
_HARDWARE_KEYS = ("gpu", "memory_gb", "cpu", "ram_gb", "stated_in")
_ID_PART = re.compile(r"[^A-Za-z0-9_+-]+")
# Metrics whose value is text even when it looks like a number ("2.1" is a version, not 2.1).
TEXT_METRICS = ("software_version", "hardware")


@dataclass
class Header:
    """What a claims document says about its source as a whole."""

    number: int
    title: str
    source: str
    hardware: dict[str, Any] = field(default_factory=lambda: {"gpu": None})
    notes: str | None = None

    def stem(self) -> str:
        """``NNN_<16 hex of the source>``: the file name the claims format asks for."""
        digest = hashlib.sha256(self.source.encode()).hexdigest()[:16]
        return f"{self.number:03d}_{digest}"


@dataclass(frozen=True)
class Row:
    line: int
    values: dict[str, Any]


# ---------------------------------------------------------------------------------- reading


def _cell(value: Any) -> Any:
    if isinstance(value, str):
        value = value.strip()
        return value if value else None
    return value


def _read_csv(path: Path, text: str) -> list[Row]:
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    unknown = [c for c in header if c is not None and c.strip() not in COLUMNS]
    if unknown:
        raise BadInput(f"{path}: line 1: unknown column {unknown[0]!r}; columns: {', '.join(COLUMNS)}")
    missing = [c for c in REQUIRED if c not in [h.strip() for h in header]]
    if missing:
        raise BadInput(f"{path}: line 1: missing column {missing[0]!r}")
    rows = []
    for raw in reader:
        if None in raw:
            raise BadInput(f"{path}: line {reader.line_num}: more cells than columns")
        values = {k.strip(): _cell(v) for k, v in raw.items()}
        if all(v is None for v in values.values()):
            continue
        rows.append(Row(reader.line_num, values))
    return rows


def _yaml_lines(text: str) -> list[int]:
    """The 1-based line of each item of the top-level ``claims`` sequence."""
    import yaml  # type: ignore[import-untyped]  # transformers depends on PyYAML; no stubs installed

    node = yaml.compose(text, Loader=yaml.SafeLoader)
    if not isinstance(node, yaml.MappingNode):
        return []
    for key, value in node.value:
        if key.value == "claims" and isinstance(value, yaml.SequenceNode):
            return [item.start_mark.line + 1 for item in value.value]
    return []


def _read_yaml(path: Path, text: str) -> tuple[dict[str, Any], list[Row]]:
    import yaml

    try:
        doc = yaml.safe_load(text)
        lines = _yaml_lines(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise BadInput(f"{path}: {where}not YAML: {getattr(exc, 'problem', None) or exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("claims"), list):
        raise BadInput(f"{path}: line 1: expected a mapping with a 'claims' list (and number, title, source)")
    unknown = sorted(set(doc) - set(HEADER_KEYS))
    if unknown:
        raise BadInput(f"{path}: line 1: unknown key {unknown[0]!r}; top-level keys: {', '.join(HEADER_KEYS)}")
    rows = []
    for i, item in enumerate(doc["claims"]):
        line = lines[i] if i < len(lines) else 0
        if not isinstance(item, dict):
            raise BadInput(f"{path}: line {line}: a claim row must be a mapping of column: value")
        unknown = [k for k in item if k not in COLUMNS]
        if unknown:
            raise BadInput(f"{path}: line {line}: unknown column {unknown[0]!r}; columns: {', '.join(COLUMNS)}")
        rows.append(Row(line, {k: _cell(item.get(k)) for k in COLUMNS}))
    return {k: v for k, v in doc.items() if k != "claims"}, rows


def read_table(path: str | Path) -> tuple[dict[str, Any], list[Row]]:
    """The table's header keys (YAML only) and its rows with their line numbers."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"{file}: cannot read the claims table: {exc}") from None
    if file.suffix.lower() == ".csv":
        return {}, _read_csv(file, text)
    if file.suffix.lower() in (".yaml", ".yml"):
        return _read_yaml(file, text)
    raise BadInput(f"{file}: a claims table is a .csv, .yaml or .yml file")


# ---------------------------------------------------------------------------------- rows -> claims


def _number(value: Any, what: str) -> float | int:
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a number, got {value!r}")
    if isinstance(value, (int, float)):
        return value
    try:
        text = str(value).replace(",", "")
        return int(text) if re.fullmatch(r"[+-]?\d+", text) else float(text)
    except ValueError:
        raise ValueError(f"{what} must be a number, got {value!r}") from None


def _value(value: Any) -> Any:
    if isinstance(value, (bool, int, float, list)):
        return value
    text = str(value)
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    if text.startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text
    try:
        return _number(text, "value")
    except ValueError:
        return text


def _tolerance(value: Any, reason: Any) -> dict[str, Any]:
    text = str(value).strip().lower()
    if text == "exact":
        out: dict[str, Any] = {"kind": "exact", "value": 0}
    elif text.endswith("%"):
        out = {"kind": "relative", "value": _number(text[:-1], "tolerance") / 100}
    else:
        out = {"kind": "absolute", "value": _number(text.lstrip("±"), "tolerance")}
    out["reason"] = str(reason)
    return out


def _bool(value: Any, what: str) -> bool:
    if value is None:
        return True
    if isinstance(value, bool):
        return value
    text = str(value).lower()
    if text in ("true", "yes", "1"):
        return True
    if text in ("false", "no", "0"):
        return False
    raise ValueError(f"{what} must be true or false, got {value!r}")


def _auto_id(v: Mapping[str, Any]) -> str:
    parts = [v["metric"], v.get("model"), v.get("path"), v.get("device"), f"bs{v['batch']}" if v.get("batch") else None]
    return ".".join(_ID_PART.sub("-", str(p)).strip("-") for p in parts if p)


def _claim(row: Row, number: int) -> dict[str, Any]:
    v = row.values
    missing = [c for c in REQUIRED if v.get(c) is None]
    if missing:
        raise ValueError(f"missing {missing[0]}")
    if v["class"] not in CLASSES:
        raise ValueError(f"class {v['class']!r} is not one of {', '.join(CLASSES)}")
    for key in ("device", "compare_device"):
        if v.get(key) is not None and v[key] not in DEVICES:
            raise ValueError(f"{key} {v[key]!r} is not one of {', '.join(DEVICES)}")
    batch = v.get("batch")
    if batch is not None:
        batch = _number(batch, "batch")
        if not isinstance(batch, int) or batch < 1:
            raise ValueError(f"batch must be a whole number >= 1, got {v['batch']!r}")
    supported = _bool(v.get("supported"), "supported")
    if not supported and not v.get("unsupported_reason"):
        raise ValueError("supported is false but unsupported_reason is empty")
    if v.get("model") is None and (v.get("path") or v.get("device") or batch):
        raise ValueError("a row with path, device or batch needs a model")
    claim: dict[str, Any] = {
        "id": f"{number:03d}.{v.get('id') or _auto_id(v)}",
        "section": str(v["source"]),
        "text": str(v.get("text") or v["source"]),
        "subject": {"kind": "cell", "model": str(v["model"])} if v.get("model") else {"kind": "study"},
        "metric": str(v["metric"]),
        "value": str(v["value"]) if v["metric"] in TEXT_METRICS else _value(v["value"]),
        "unit": str(v.get("unit") or ""),
        "published_label": str(v["label"]) if v.get("label") else None,
        "kit_path": v.get("path"),
        "device": v.get("device"),
        "batch_size": batch,
        "tolerance": _tolerance(v["tolerance"], v["tolerance_reason"]),
        "comparability": v["class"],
        "supported": supported,
        "unsupported_reason": str(v["unsupported_reason"]) if v.get("unsupported_reason") else None,
    }
    for key in ("compare_device", "device_note", "note"):
        if v.get(key) is not None:
            claim[key] = str(v[key])
    return claim


def _header(meta: Mapping[str, Any], overrides: Mapping[str, Any], where: str) -> Header:
    merged = {**meta, **{k: v for k, v in overrides.items() if v is not None}}
    for key in ("number", "title", "source"):
        if merged.get(key) in (None, ""):
            raise BadInput(f"{where}: the claims need a {key} (YAML top-level key, or --{key})")
    try:
        number = int(merged["number"])
    except (TypeError, ValueError):
        raise BadInput(f"{where}: number must be a whole number 0-999, got {merged['number']!r}") from None
    if not 0 <= number <= 999:
        raise BadInput(f"{where}: number must be a whole number 0-999, got {number}")
    hardware = merged.get("hardware") or {"gpu": None}
    if not isinstance(hardware, Mapping) or set(hardware) - set(_HARDWARE_KEYS):
        raise BadInput(f"{where}: hardware is a mapping of {', '.join(_HARDWARE_KEYS)}")
    hardware = {"gpu": None, **hardware}
    notes = merged.get("notes")
    return Header(number, str(merged["title"]), str(merged["source"]), dict(hardware), str(notes) if notes else None)


_POINTER = re.compile(r"#/claims/(\d+)")


def _locate(problem: str, rows: list[Row], where: str) -> str:
    """``problem`` with the table line of the claim it points at."""
    match = _POINTER.search(problem)
    if match and int(match.group(1)) < len(rows):
        return f"{where}: line {rows[int(match.group(1))].line}: {problem}"
    return f"{where}: {problem}"


def import_table(path: str | Path, **header: Any) -> tuple[str, dict[str, Any]]:
    """The claims document of a CSV/YAML table and its file stem; `BadInput` naming the line of
    the first bad row. ``header`` (number, title, source, hardware, notes) overrides the YAML's."""
    where = str(path)
    meta, rows = read_table(path)
    head = _header(meta, header, where)
    if not rows:
        raise BadInput(f"{where}: no claim rows")
    claims = []
    for row in rows:
        try:
            claims.append(_claim(row, head.number))
        except ValueError as exc:
            raise BadInput(f"{where}: line {row.line}: {exc}") from None
    doc: dict[str, Any] = {
        "schema_version": "1",
        "source_file": f"{head.stem()}.txt",
        "title": head.title,
        "published_hardware": head.hardware,
    }
    notes = f"source: {head.source}" + (f"; {head.notes}" if head.notes else "")
    doc["notes"] = notes
    doc["claims"] = claims
    problem = documents.problem(doc, "claims")
    if problem is not None:
        raise BadInput(_locate(problem, rows, where))
    try:
        parse_claim_file(f"{head.stem()}.json", documents.dumps(doc))
    except ClaimsError as exc:
        raise BadInput(_locate(str(exc), rows, where)) from None
    return head.stem(), doc


# ---------------------------------------------------------------------------------- claims -> rows


def _tolerance_text(tol: Mapping[str, Any]) -> str:
    if tol["kind"] == "exact":
        return "exact"
    if tol["kind"] == "relative":
        return f"{round(tol['value'] * 100, 10):g}%"
    return f"{tol['value']:g}"


def table_rows(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A claims document's cell and study claims as table rows (aggregate claims are refused:
    they have no row form; keep them in JSON)."""
    prefix = doc["source_file"][:3] + "."
    rows = []
    for claim in doc["claims"]:
        if claim["subject"]["kind"] == "aggregate":
            raise BadInput(f"{claim['id']}: an aggregate claim has no table row; keep it in the JSON file")
        row: dict[str, Any] = {
            "id": claim["id"][len(prefix) :],
            "model": claim["subject"].get("model"),
            "path": claim["kit_path"],
            "device": claim["device"],
            "batch": claim["batch_size"],
            "metric": claim["metric"],
            "value": claim["value"],
            "unit": claim["unit"] or None,
            "tolerance": _tolerance_text(claim["tolerance"]),
            "tolerance_reason": claim["tolerance"]["reason"],
            "class": claim["comparability"],
            "source": claim["section"],
            "text": claim["text"] if claim["text"] != claim["section"] else None,
            "label": claim["published_label"],
            "supported": None if claim["supported"] else False,
            "unsupported_reason": claim["unsupported_reason"],
            "compare_device": claim.get("compare_device"),
            "device_note": claim.get("device_note"),
            "note": claim.get("note"),
        }
        rows.append(row)
    return rows


def write_table(doc: Mapping[str, Any], target: str | Path, source: str | None = None) -> Path:
    """Write ``doc`` as a CSV or YAML table (by ``target``'s suffix)."""
    out = Path(target)
    rows = table_rows(doc)
    if out.suffix.lower() == ".csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(COLUMNS), lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {k: ("" if v is None else json.dumps(v) if isinstance(v, (bool, list)) else v) for k, v in row.items()}
            )
        text = buffer.getvalue()
    else:
        import yaml

        meta = {
            "number": int(doc["source_file"][:3]),
            "title": doc["title"],
            "source": source or str(doc.get("notes", "")).removeprefix("source: ").split("; ")[0],
            "hardware": doc["published_hardware"],
            "claims": [{k: v for k, v in row.items() if v is not None} for row in rows],
        }
        text = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, width=100)
    documents.atomic_write_text(out, text)
    return out
