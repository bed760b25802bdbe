"""Load ``expected/``: every claim file read strictly and schema-checked, then turned into dataclasses.

Files are read and checked by `kit.documents` (the one strict reader); the rules JSON Schema cannot
say (a file matches its seed, ids are unique and prefixed) are checked here. A malformed file raises
`ClaimsError`, a `kit.documents.DocumentError`: its ``str`` is one line naming the file, the JSON
pointer (URI-fragment form: ``#/claims/3/tolerance/kind``, ``#`` for the document root) and the
broken rule, which every command prints as ``qkit: error: <line>`` and exits 2.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kit import documents
from kit.documents import DocumentError

COMPARABILITY: tuple[str, ...] = ("portable", "relative", "hardware-bound")


class ClaimsError(DocumentError, ValueError):
    """A claim file (or the expected/ directory) is unusable. ``str`` is ``<file>: at <pointer>: ... (rule: ...)``.

    Still a ValueError for callers written before it became a `DocumentError`.
    """


@dataclass(frozen=True)
class Tolerance:
    kind: str  # relative | absolute | exact
    value: float
    reason: str

    def describe(self) -> str:
        if self.kind == "relative":
            return f"±{self.value:.1%}"
        if self.kind == "absolute":
            return f"±{self.value:g}"
        return "exact"


@dataclass(frozen=True)
class Over:
    """The rows an aggregate is computed from: ``metric`` of every (model, path) pair."""

    metric: str
    kit_paths: tuple[str, ...]
    models: tuple[str, ...]
    device: str | None = None


@dataclass(frozen=True)
class Subject:
    kind: str  # cell | aggregate | study
    model: str | None = None
    aggregate: str | None = None
    over: Over | None = None
    how: str | None = None
    params: dict[str, Any] = field(default_factory=dict, hash=False)
    item: str | None = None

    def describe(self) -> str:
        if self.kind == "cell":
            return str(self.model)
        if self.kind == "aggregate" and self.over is not None:
            paths = "+".join(self.over.kit_paths)
            return f"{self.aggregate} of {self.over.metric} [{paths}] over {len(self.over.models)} models"
        return f"study{': ' + self.item if self.item else ''}"


@dataclass(frozen=True)
class TableCell:
    table: str
    row: str
    column: str


@dataclass(frozen=True)
class Claim:
    id: str
    source_file: str
    section: str
    text: str
    subject: Subject
    metric: str
    value: Any
    unit: str
    published_label: str | None
    kit_path: str | None
    device: str | None
    batch_size: int | None
    tolerance: Tolerance
    comparability: str
    supported: bool
    unsupported_reason: str | None
    hardware: dict[str, Any] = field(default_factory=dict, hash=False)
    compare_device: str | None = None
    device_note: str | None = None
    table_cell: TableCell | None = None
    note: str | None = None

    @property
    def measure_device(self) -> str | None:
        """The device our measurement is taken on: ``compare_device`` when the claim needs one."""
        return self.compare_device or self.device


@dataclass(frozen=True)
class ClaimFile:
    path: Path
    source_file: str
    title: str
    published_hardware: dict[str, Any]
    claims: tuple[Claim, ...]


@dataclass(frozen=True)
class ClaimSet:
    directory: Path
    files: tuple[ClaimFile, ...]

    @property
    def claims(self) -> list[Claim]:
        return [claim for f in self.files for claim in f.claims]

    def __iter__(self) -> Iterator[Claim]:
        return iter(self.claims)

    def __len__(self) -> int:
        return sum(len(f.claims) for f in self.files)

    def by_id(self) -> dict[str, Claim]:
        return {claim.id: claim for claim in self}

    def counts(self) -> dict[str, Counter[str]]:
        """Per source file: how many claims of each comparability class (plus 'unsupported')."""
        out: dict[str, Counter[str]] = {}
        for f in self.files:
            counter: Counter[str] = Counter(c.comparability for c in f.claims)
            counter["unsupported"] = sum(1 for c in f.claims if not c.supported)
            counter["total"] = len(f.claims)
            out[f.source_file] = counter
        return out


# ------------------------------------------------------------------------------- locating


def default_expected_dir() -> Path:
    """``$QKIT_EXPECTED`` or the bundled study's claims (package data)."""
    return documents.expected_dir()


def parse_json(name: str, text: str | bytes) -> Any:
    """Strict JSON (`kit.documents.loads`); a refusal is a `ClaimsError` at the root, rule ``json``."""
    try:
        return documents.loads(text, name)
    except DocumentError as exc:
        raise ClaimsError(name, f"at #: {exc.problem} (rule: json)") from None


# ------------------------------------------------------------------------ semantic checks


def _semantic_problems(name: str, doc: dict[str, Any]) -> str | None:
    """Rules JSON Schema cannot say: the file matches its seed, ids are unique and prefixed."""
    stem = Path(name).stem
    if doc["source_file"] != f"{stem}.txt":
        return f"at #/source_file: names {doc['source_file']!r}, but this file is for {stem}.txt (rule: source-file)"
    prefix = stem[:3] + "."
    seen: dict[str, int] = {}
    for i, claim in enumerate(doc["claims"]):
        if not claim["id"].startswith(prefix):
            return f"at #/claims/{i}/id: {claim['id']!r} does not start with {prefix!r} (rule: id-prefix)"
        if claim["id"] in seen:
            return f"at #/claims/{i}/id: {claim['id']!r} repeats #/claims/{seen[claim['id']]}/id (rule: unique-id)"
        seen[claim["id"]] = i
        problem = _subject_problem(claim)
        if problem:
            return f"at #/claims/{i}/{problem}"
    return None


def _subject_problem(claim: dict[str, Any]) -> str | None:
    subject = claim["subject"]
    leader = subject["kind"] == "aggregate" and subject["aggregate"] == "leader"
    if leader and claim["value"] not in subject["over"]["models"]:
        return "value: the leader is not among the models it is chosen from (rule: leader-member)"
    if subject["kind"] == "aggregate" and subject["aggregate"] in ("range", "all_within"):
        low, high = claim["value"]
        if low > high:
            return "value: range low end above high end (rule: range-order)"
    return None


# ---------------------------------------------------------------------------- to objects


def _tolerance(d: dict[str, Any]) -> Tolerance:
    return Tolerance(d["kind"], float(d["value"]), d["reason"])


def _subject(d: dict[str, Any]) -> Subject:
    over = None
    if d["kind"] == "aggregate":
        o = d["over"]
        paths = o["kit_path"] if isinstance(o["kit_path"], list) else [o["kit_path"]]
        over = Over(o["metric"], tuple(paths), tuple(o["models"]), o.get("device"))
    return Subject(
        kind=d["kind"],
        model=d.get("model"),
        aggregate=d.get("aggregate"),
        over=over,
        how=d.get("how"),
        params=dict(d.get("params") or {}),
        item=d.get("item"),
    )


def _claim(d: dict[str, Any], source_file: str, hardware: dict[str, Any]) -> Claim:
    cell = d.get("table_cell")
    return Claim(
        id=d["id"],
        source_file=source_file,
        section=d["section"],
        text=d["text"],
        subject=_subject(d["subject"]),
        metric=d["metric"],
        value=d["value"],
        unit=d["unit"],
        published_label=d["published_label"],
        kit_path=d["kit_path"],
        device=d["device"],
        # JSON Schema's "integer" admits 1.0; the claim carries the int it means.
        batch_size=int(d["batch_size"]) if d["batch_size"] is not None else None,
        tolerance=_tolerance(d["tolerance"]),
        comparability=d["comparability"],
        supported=d["supported"],
        unsupported_reason=d["unsupported_reason"],
        hardware=dict(hardware),
        compare_device=d.get("compare_device"),
        device_note=d.get("device_note"),
        table_cell=TableCell(cell["table"], cell["row"], cell["column"]) if cell else None,
        note=d.get("note"),
    )


def parse_claim_file(name: str, text: str | bytes, path: Path | None = None) -> ClaimFile:
    """Parse and check one claim file's text. ``name`` is how errors name the file."""
    return _claim_file(name, parse_json(name, text), path)


def read_claim_file(path: Path) -> ClaimFile:
    """Read one claim file through the strict reader (regular file, size and depth bounds), then check it."""
    try:
        doc = documents.read_json(path)
    except DocumentError as exc:
        raise ClaimsError(exc.source, f"at #: {exc.problem} (rule: {_rule_of(exc.problem)})") from None
    return _claim_file(str(path), doc, path)


def _rule_of(problem: str) -> str:
    # The strict reader refuses a file before reading it (not a regular file, too big) or its text.
    before_parsing = problem.startswith(("unreadable", "not a regular file")) or "-byte limit" in problem
    return "read" if before_parsing else "json"


def _claim_file(name: str, doc: Any, path: Path | None) -> ClaimFile:
    problem = documents.problem(doc, "claims")
    if problem is None:
        problem = _semantic_problems(name, doc)
    if problem is not None:
        raise ClaimsError(name, problem)
    hardware = doc["published_hardware"]
    claims = tuple(_claim(c, doc["source_file"], hardware) for c in doc["claims"])
    return ClaimFile(path or Path(name), doc["source_file"], doc["title"], dict(hardware), claims)


def _cross_file_duplicates(files: list[ClaimFile]) -> None:
    owner: dict[str, Path] = {}
    for f in files:
        for i, claim in enumerate(f.claims):
            if claim.id in owner:
                raise ClaimsError(
                    str(f.path),
                    f"at #/claims/{i}/id: {claim.id!r} is also defined in {owner[claim.id]} (rule: unique-id)",
                )
            owner[claim.id] = f.path


def load_claims(expected_dir: Path | str | None = None) -> ClaimSet:
    """Every ``*.json`` in ``expected_dir`` (default: `default_expected_dir`), schema-checked."""
    directory = Path(expected_dir) if expected_dir is not None else default_expected_dir()
    if not directory.is_dir():
        raise ClaimsError(str(directory), "at #: not a directory of claim files (rule: expected-dir)")
    paths = sorted(p for p in directory.glob("*.json") if not p.name.startswith("."))
    if not paths:
        raise ClaimsError(str(directory), "at #: no *.json claim files (rule: expected-dir)")
    files = [read_claim_file(p) for p in paths]
    _cross_file_duplicates(files)
    return ClaimSet(directory, tuple(files))
