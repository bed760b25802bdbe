"""Every qkit document is read, checked and written here, and nowhere else.

Kinds and their schemas (JSON Schema 2020-12, shipped inside the package under ``kit/data/schemas``
so that a wheel installed anywhere finds them; ``$QKIT_SCHEMAS`` overrides the folder):

    result    one cell's measurement            result.schema.json
    claims    one published document's claims   claims.schema.json
    verdicts  validate's output                 verdicts.schema.json
    findings  audit's output                    findings.schema.json
    accuracy  one accuracy run                  accuracy.schema.json

Reading is strict, because these files come from other machines, other people and old kit
versions: a regular file only (no FIFO, device or directory), at most `MAX_BYTES`, UTF-8,
standard JSON only (``NaN``/``Infinity`` and numbers beyond a double are refused: a NaN would
compare as neither inside nor outside any tolerance), nested at most `MAX_DEPTH` deep, then
schema-checked with format checking. Every refusal is a `DocumentError`: one line naming the file
and the problem, never a traceback. Writing checks the schema first, then writes to a temporary
file in the same folder, fsyncs and renames it over the target, so a killed write never leaves
half a document.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import stat
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, BinaryIO

import jsonschema
from jsonschema import Draft202012Validator

from kit.errors import BadInput, one_line

KINDS: dict[str, str] = {
    "result": "result.schema.json",
    "claims": "claims.schema.json",
    "verdicts": "verdicts.schema.json",
    "findings": "findings.schema.json",
    "accuracy": "accuracy.schema.json",
    "diagnosis": "diagnosis.schema.json",
}
# Bounds of the strict reader. A result document is tens of KiB and the study's largest claim
# file under 1 MiB; 64 MiB leaves room for any honest document and stops an endless or huge file
# (a results folder holding /dev/zero's like) before it is read into memory.
MAX_BYTES = 64 * 2**20
MAX_DEPTH = 64


class DocumentError(BadInput):
    """A document that cannot be used. ``str`` is one line: ``<file>: <problem>``."""

    def __init__(self, source: str | os.PathLike[str], problem: str) -> None:
        self.source = str(source)
        self.problem = one_line(problem)
        super().__init__(f"{self.source}: {self.problem}")


# ------------------------------------------------------------------------------ package data


def data_dir(name: str) -> Path:
    """A folder shipped inside the package (``schemas``, ``expected``)."""
    return Path(str(resources.files("kit") / "data" / name))


def schemas_dir() -> Path:
    override = os.environ.get("QKIT_SCHEMAS")
    return Path(override) if override else data_dir("schemas")


def expected_dir() -> Path:
    """The bundled study's claims folder (``$QKIT_EXPECTED`` overrides it)."""
    override = os.environ.get("QKIT_EXPECTED")
    return Path(override) if override else data_dir("expected")


def schema_file(kind: str) -> Path:
    try:
        return schemas_dir() / KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown document kind {kind!r}; kinds: {', '.join(KINDS)}") from None


@functools.cache
def _validator(path: str) -> Draft202012Validator:
    schema = json.loads(Path(path).read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def validator(kind: str) -> Draft202012Validator:
    return _validator(str(schema_file(kind)))


def schema(kind: str) -> dict[str, Any]:
    return dict(validator(kind).schema)


# ---------------------------------------------------------------------------- strict parsing


def _refuse_constant(token: str) -> Any:
    raise ValueError(f"{token} is not standard JSON")


def _finite_float(token: str) -> float:
    value = float(token)
    if math.isinf(value):
        raise ValueError(f"number {token[:40]} is beyond a double")
    return value


def _bounded_int(token: str) -> int | float:
    value = int(token)
    # An integer a double cannot hold is no measurement, and comparing it would overflow.
    if abs(value) > 2**1023:
        raise ValueError(f"integer of {len(token)} digits is beyond a double")
    return value


def _depth_exceeds(obj: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Iterable[Any] = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def loads(text: str | bytes, source: str = "<text>", *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse standard JSON strictly; raise `DocumentError` naming ``source``."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DocumentError(source, f"not UTF-8 (byte {exc.start})") from None
    try:
        obj = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float, parse_int=_bounded_int)
    except RecursionError:
        raise DocumentError(source, f"nested deeper than {max_depth} levels") from None
    except json.JSONDecodeError as exc:
        raise DocumentError(source, f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except ValueError as exc:
        raise DocumentError(source, f"not standard JSON: {exc}") from None
    if _depth_exceeds(obj, max_depth):
        raise DocumentError(source, f"nested deeper than {max_depth} levels")
    return obj


def read_json(file: str | os.PathLike[str], *, max_bytes: int = MAX_BYTES, max_depth: int = MAX_DEPTH) -> Any:
    """One JSON file, read strictly (see the module's docstring); no schema check."""
    name = str(file)
    try:
        fd = os.open(name, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise DocumentError(name, f"unreadable: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise DocumentError(name, "not a regular file")
        if info.st_size > max_bytes:
            raise DocumentError(name, f"{info.st_size} bytes, over the {max_bytes}-byte limit")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise DocumentError(name, f"unreadable: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:  # grew while we read it
        raise DocumentError(name, f"over the {max_bytes}-byte limit")
    return loads(data, name, max_depth=max_depth)


# ------------------------------------------------------------------------------ schema checks


def json_pointer(parts: Iterable[Any]) -> str:
    """RFC 6901 pointer in URI-fragment form; ``#`` is the document root."""
    escaped = [str(p).replace("~", "~0").replace("/", "~1") for p in parts]
    return "#" + "".join(f"/{p}" for p in escaped)


def problem(doc: Any, kind: str) -> str | None:
    """``at <pointer>: <message> (rule: <keyword>)`` for the most relevant violation, or None."""
    if _depth_exceeds(doc, MAX_DEPTH):
        return f"at #: nested deeper than {MAX_DEPTH} levels (rule: depth)"
    error = jsonschema.exceptions.best_match(validator(kind).iter_errors(doc))
    if error is None:
        return None
    return f"at {json_pointer(error.absolute_path)}: {one_line(error.message, 200)} (rule: {error.validator})"


def check(doc: Any, kind: str, source: str = "document") -> None:
    """Raise `DocumentError` when ``doc`` breaks the ``kind`` schema."""
    found = problem(doc, kind)
    if found:
        raise DocumentError(source, f"not a valid {kind} document: {found}")


def read(file: str | os.PathLike[str], kind: str, *, max_bytes: int = MAX_BYTES) -> Any:
    """Read ``file`` strictly and check it against the ``kind`` schema."""
    doc = read_json(file, max_bytes=max_bytes)
    check(doc, kind, str(file))
    return doc


@dataclass
class Loaded:
    """Documents read from many files: the good ones, and each refused file with its reason."""

    docs: list[Any] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (file, one-line reason)


def read_many(files: Iterable[str | os.PathLike[str]], kind: str) -> Loaded:
    """Every file that reads and checks, in order; a bad one is listed by name and not counted."""
    loaded = Loaded()
    for file in files:
        try:
            doc = read(file, kind)
        except DocumentError as exc:
            loaded.rejected.append((exc.source, exc.problem))
            continue
        loaded.docs.append(doc)
        loaded.files.append(Path(file))
    return loaded


# ------------------------------------------------------------------------------------ writing


def atomic_write_text(target: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``target`` through a temporary file in the same folder, fsync and rename."""
    return atomic_write_bytes(target, text.encode("utf-8"))


def atomic_write_bytes(target: str | os.PathLike[str], data: bytes) -> Path:
    """Documents go through `atomic_write_text`; the FP32 reference outputs and the report's
    figures are bytes."""
    return atomic_write_with(target, lambda fh: fh.write(data))


def atomic_write_with(target: str | os.PathLike[str], write: Callable[[BinaryIO], object]) -> Path:
    """The kit's one atomic writer: ``write(fh)`` fills a temporary file beside ``target`` (a
    writer that streams, e.g. ``torch.save``, needs no copy of the data in memory), fsync, rename."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        # Ctrl-C or a crash mid-write: the temporary file goes, the old document (if any) stays.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return target


def dumps(doc: Any) -> str:
    """Standard JSON only: a NaN or Infinity in a document is a bug, refused here (ValueError)."""
    return json.dumps(doc, indent=1, allow_nan=False, ensure_ascii=False) + "\n"


def write_json(target: str | os.PathLike[str], doc: Any) -> Path:
    """A JSON file with no schema of its own (merge report, shard manifest), written atomically."""
    return atomic_write_text(target, dumps(doc))


def write(target: str | os.PathLike[str], doc: Any, kind: str) -> Path:
    """Check ``doc`` against the ``kind`` schema, then write it atomically."""
    check(doc, kind, str(target))
    return write_json(target, doc)
