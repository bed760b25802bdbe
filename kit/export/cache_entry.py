"""A cache entry of the run's ``_cache``: a directory made once, in a temporary directory renamed
into place when complete, with ``meta.json`` recording how it was made and each file's size.

ONNX exports and the models derived from them (`kit.export.onnx_export.cached_model`) and the
FP32 model directory bitsandbytes loads from (`kit.paths.bnb`) are such entries.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kit.errors import one_line

META_FILE = "meta.json"


def entry_problem(entry: Path) -> str | None:
    """Why a cache entry (an export, or a model derived from one) cannot be used; None if usable.

    Usable = ``meta.json`` readable and every file it lists present at the size it was written.
    """
    meta_file = entry / META_FILE
    if not meta_file.is_file():
        return f"{meta_file} missing"
    try:
        meta = json.loads(meta_file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        return f"{meta_file} unreadable ({one_line(exc)})"
    for name, size in meta.get("files", {}).items():
        path = entry / name
        if not path.is_file():
            return f"{path} missing"
        if path.stat().st_size != size:
            return f"{path} is {path.stat().st_size} bytes, {size} when written (truncated or replaced)"
    return None


def read_meta(entry: Path) -> dict[str, Any]:
    """The record a cache entry was written with."""
    return json.loads((entry / META_FILE).read_text())


def publish(tmp: Path, entry: Path) -> None:
    """Rename a finished temporary entry into place (another process may have won the race)."""
    try:
        os.replace(tmp, entry) if not entry.exists() else shutil.rmtree(tmp)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not entry.exists():
            raise


def write_meta(directory: Path, record: dict[str, Any], files: list[Path]) -> None:
    """Write ``meta.json``: the record plus each file's size (how truncation is noticed)."""
    record = dict(record)
    record["files"] = {p.name: p.stat().st_size for p in files}
    (directory / META_FILE).write_text(json.dumps(record, indent=1, default=str) + "\n")


def cached_entry(
    entry: Path, make: Callable[[Path], dict[str, Any]], files: Callable[[Path], list[Path]]
) -> tuple[Path, dict[str, Any]]:
    """The directory ``entry`` from the cache, or made now and cached: ``make(tmp) -> record``
    fills a temporary directory, ``files(tmp)`` names what it wrote (their sizes are recorded, so
    a truncated file is noticed), and the directory is renamed into place only once complete.

    The returned record has ``cache_hit``, ``cache_entry`` and ``cache_note`` (why an entry that
    was there could not be used: missing or truncated files)."""
    note = None
    if entry.exists():
        problem = entry_problem(entry)
        if problem is None:
            record = read_meta(entry)
            record.update(cache_hit=True, cache_entry=str(entry), cache_note=None)
            return entry, record
        note = f"cache entry unusable ({problem}); made again"
        shutil.rmtree(entry, ignore_errors=True)
    tmp = entry.with_name(f"{entry.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        record = make(tmp)
        write_meta(tmp, record, files(tmp))
        publish(tmp, entry)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    record.update(cache_hit=False, cache_entry=str(entry), cache_note=note)
    return entry, record
