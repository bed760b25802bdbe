"""The result store: one JSON document per cell, written atomically, read back for resume.

Layout: ``<out>/cells/<model>/<path>__<device>__bs<N>.json``. A document is schema-checked before
it is written; the write goes to a temporary file in the same directory, is fsynced, then renamed
over the final name, so a killed write never leaves a partial document behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kit.results.schema import SchemaError, first_error, validate_result


@dataclass(frozen=True, order=True)
class Cell:
    model: str
    path: str
    device: str
    batch_size: int

    def key(self) -> str:
        return f"{self.model}/{self.path}/{self.device}/bs{self.batch_size}"

    def as_dict(self) -> dict[str, Any]:
        return {"model": self.model, "path": self.path, "device": self.device, "batch_size": self.batch_size}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Cell:
        return cls(d["model"], d["path"], d["device"], int(d["batch_size"]))


def cell_file(root: Path, cell: Cell) -> Path:
    return Path(root) / "cells" / cell.model / f"{cell.path}__{cell.device}__bs{cell.batch_size}.json"


def atomic_write_text(target: Path, text: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        # Ctrl-C or a crash mid-write: the temporary file goes, the old document (if any) stays.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_result(root: Path, doc: dict[str, Any]) -> Path:
    validate_result(doc)
    target = cell_file(root, Cell.from_dict(doc["cell"]))
    atomic_write_text(target, json.dumps(doc, indent=1, sort_keys=False, allow_nan=False) + "\n")
    return target


def read_result(file: Path) -> dict[str, Any]:
    """Read and schema-check one document; raise SchemaError with a one-line reason."""
    try:
        doc = json.loads(Path(file).read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise SchemaError(f"unreadable: {exc}") from None
    except json.JSONDecodeError as exc:
        raise SchemaError(f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    problem = first_error(doc, "result.schema.json")
    if problem:
        raise SchemaError(f"not a valid result: {problem}")
    return doc


@dataclass
class LoadedResults:
    docs: list[dict[str, Any]] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    corrupt: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)


def result_files(root: Path) -> list[Path]:
    root = Path(root)
    if not root.exists():
        return []
    return sorted(p for p in root.rglob("*.json") if not p.name.startswith(".") and p.parent.name != "_cache"
                  and _is_result_candidate(p, root))


def _is_result_candidate(p: Path, root: Path) -> bool:
    # Only documents under a cells/ directory are cell results; other JSON (verdicts, findings,
    # run manifests) lives beside them and is not a result.
    return "cells" in p.relative_to(root).parts


def load_results(root: Path) -> LoadedResults:
    """Every result document under ``root`` (recursively); corrupt ones listed with their reason."""
    loaded = LoadedResults()
    for file in result_files(root):
        try:
            doc = read_result(file)
        except SchemaError as exc:
            loaded.corrupt.append((str(file), str(exc)))
            continue
        loaded.docs.append(doc)
        loaded.files.append(file)
    return loaded


def done_cells(root: Path) -> tuple[set[Cell], list[tuple[str, str]]]:
    """Cells that already have a valid document (any status), and corrupt files met on the way."""
    loaded = load_results(root)
    return {Cell.from_dict(d["cell"]) for d in loaded.docs}, loaded.corrupt
