"""The result store: one JSON document per cell, written atomically, read back for resume.

Layout: ``<out>/cells/<model>/<path>__<device>__bs<N>.json``. A document is schema-checked before
it is written; the write goes to a temporary file in the same directory, is fsynced, then renamed
over the final name, so a killed write never leaves a partial document behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kit import documents


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


def write_result(root: Path, doc: dict[str, Any]) -> Path:
    """Schema-check ``doc`` and write it atomically as its cell's document under ``root``."""
    return documents.write(cell_file(root, Cell.from_dict(doc["cell"])), doc, "result")


def read_result(file: Path) -> dict[str, Any]:
    """Read one document strictly and schema-check it; raise `kit.documents.DocumentError` (one line)."""
    doc: dict[str, Any] = documents.read(file, "result")
    return doc


class LoadedResults(documents.Loaded):
    """The result documents of a folder (`documents.Loaded`); ``corrupt`` names its refused files as the
    runner, merge and validate report them."""

    @property
    def corrupt(self) -> list[tuple[str, str]]:  # (file, reason)
        return self.rejected


def result_files(root: Path) -> list[Path]:
    root = Path(root)
    if not root.exists():
        return []
    return sorted(
        p
        for p in root.rglob("*.json")
        if not p.name.startswith(".") and p.parent.name != "_cache" and _is_result_candidate(p, root)
    )


def _is_result_candidate(p: Path, root: Path) -> bool:
    # Only documents under a cells/ directory are cell results; other JSON (verdicts, findings,
    # run manifests) lives beside them and is not a result.
    return "cells" in p.relative_to(root).parts


def load_results(root: Path) -> LoadedResults:
    """Every result document under ``root`` (recursively); a refused file is listed with its reason.

    Each file goes through the strict reader, so a FIFO, a device, a huge or endlessly nested file,
    or NaN/Infinity in a document is one line in ``corrupt``, never an exception or a hang.
    """
    many = documents.read_many(result_files(root), "result")
    return LoadedResults(many.docs, many.files, many.rejected)


def done_cells(root: Path) -> tuple[set[Cell], list[tuple[str, str]]]:
    """Cells that already have a valid document (any status), and corrupt files met on the way."""
    loaded = load_results(root)
    return {Cell.from_dict(d["cell"]) for d in loaded.docs}, loaded.corrupt
