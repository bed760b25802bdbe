"""Merge result sets (shards, machines, reruns) into one: ``qkit merge DIR... --out DIR``.

Layout of the merged set: ``<out>/<machine-tag>/cells/<model>/<path>__<device>__bs<N>.json``, one
sub-directory per machine (the tag as ``kit.run.reproduce.machine_tag`` makes it: the GPU's name
if the measuring process saw one, else the CPU model, both read from each document's own
``environment``). A cell is (model, path, device, batch), but the same cell measured on an A100
and on a T4 is two results, not a duplicate: they stay apart so ``validate`` can give a verdict
per machine. ``load_results(<out>)`` still finds every document (it is recursive).

Within one machine tag:

- *duplicate*: the same document met again (byte-for-byte the same content, e.g. a shard copied
  twice or merged again): counted once, written once.
- *conflict*: two different documents for the same cell (a rerun, two nodes of the same GPU model
  measuring one cell): reported, never silently. The kept one is an ``ok`` document if there is
  one, then the newest by ``started_utc`` (then ``finished_utc``, then content hash, so the choice
  is deterministic); the others are set aside under ``<out>/<tag>/conflicts/`` (not a result
  directory, so no tool reads them as results) so that nothing measured is lost.

Merging into a directory that already holds a merge adds to it (its documents take part in the
duplicate/conflict checks). Each source's ``shard.json`` (written by ``reproduce --shard``) lets
the merge report shards and cells that never came back. ``<out>/merge.json`` records the sources,
the counts and every conflict; ``<out>/<tag>/summary.csv`` is rewritten per machine.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kit import documents
from kit.documents import DocumentError
from kit.errors import BadInput, one_line
from kit.hardware.machine import machine_name, machine_tag
from kit.results.store import Cell, cell_file, load_results, write_result

STATUS_RANK = {"ok": 2, "skipped": 1, "failed": 0}
CONFLICTS_DIR = "conflicts"
MERGE_RECORD = "merge.json"


class MergeInputError(BadInput, ValueError):
    """Bad input to a merge (missing source, --out inside a source ...): one line; the CLI exits 2."""


def machine_tag_of(doc: dict[str, Any]) -> str:
    """The machine tag of the process that wrote ``doc``: its GPU's name, else its CPU model."""
    return machine_tag(machine_name(doc.get("environment")))


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def fingerprint(doc: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _when(value: Any) -> tuple[int, str]:
    """Sortable time: parsed ISO 8601 where possible (offsets differ across machines), else text."""
    if isinstance(value, str):
        try:
            t = _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            if t.tzinfo is None:
                t = t.replace(tzinfo=_dt.timezone.utc)
            return (1, t.astimezone(_dt.timezone.utc).isoformat())
        except ValueError:
            return (0, value)
    return (0, "")


@dataclass
class Version:
    """One document of a cell as met in a source (or already in the destination)."""

    doc: dict[str, Any]
    file: str
    source: str
    digest: str

    @property
    def status(self) -> str:
        return str(self.doc.get("status"))

    @property
    def started(self) -> str:
        return str(self.doc.get("started_utc"))

    def rank(self) -> tuple[Any, ...]:
        return (
            STATUS_RANK.get(self.status, -1) == STATUS_RANK["ok"],
            _when(self.doc.get("started_utc")),
            _when(self.doc.get("finished_utc")),
            STATUS_RANK.get(self.status, -1),
            self.digest,
        )

    def describe(self) -> str:
        return f"{self.file} ({self.status}, started {self.started})"


@dataclass
class Conflict:
    machine: str
    cell: Cell
    kept: Version
    set_aside: list[tuple[Version, str]]  # (version, where it was saved)

    def line(self) -> str:
        aside = "; ".join(f"{v.describe()} -> {where}" for v, where in self.set_aside)
        return f"conflict {self.machine}/{self.cell.key()}: kept {self.kept.describe()}; set aside {aside}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "machine": self.machine,
            "cell": self.cell.as_dict(),
            "kept": {"file": self.kept.file, "status": self.kept.status, "started_utc": self.kept.started},
            "set_aside": [
                {"file": v.file, "status": v.status, "started_utc": v.started, "saved_as": where}
                for v, where in self.set_aside
            ],
        }


@dataclass
class MergeReport:
    dest: str
    sources: list[str]
    read: int = 0
    written: int = 0
    unchanged: int = 0
    duplicates: int = 0
    conflicts: list[Conflict] = field(default_factory=list)
    corrupt: list[tuple[str, str]] = field(default_factory=list)
    empty_sources: list[str] = field(default_factory=list)
    machines: dict[str, int] = field(default_factory=dict)  # tag -> cells held in dest
    shard_problems: list[str] = field(default_factory=list)
    missing_cells: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.conflicts or self.corrupt or self.shard_problems or self.missing_cells)

    def line(self) -> str:
        machines = ", ".join(f"{t} ({n} cells)" for t, n in sorted(self.machines.items())) or "none"
        return (
            f"merged {len(self.sources)} source(s) into {self.dest}: {self.read} documents read, "
            f"{self.written} written, {self.unchanged} already there, {self.duplicates} duplicate(s) counted once, "
            f"{len(self.conflicts)} conflict(s), {len(self.corrupt)} corrupt; machines: {machines}"
        )

    def lines(self) -> list[str]:
        out = [self.line()]
        out += [c.line() for c in self.conflicts]
        out += [f"corrupt {f}: {why} (not merged)" for f, why in self.corrupt]
        out += [f"note: {s} holds no result documents" for s in self.empty_sources]
        out += self.shard_problems
        if self.missing_cells:
            shown = ", ".join(self.missing_cells[:10]) + (" ..." if len(self.missing_cells) > 10 else "")
            out.append(f"{len(self.missing_cells)} cell(s) of the sharded plan have no result: {shown}")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "qkit-merge",
            "dest": self.dest,
            "sources": self.sources,
            "read": self.read,
            "written": self.written,
            "unchanged": self.unchanged,
            "duplicates": self.duplicates,
            "conflicts": [c.to_dict() for c in self.conflicts],
            "corrupt": [{"file": f, "reason": why} for f, why in self.corrupt],
            "empty_sources": self.empty_sources,
            "machines": self.machines,
            "shard_problems": self.shard_problems,
            "missing_cells": self.missing_cells,
        }


def _check_inputs(sources: list[Path], dest: Path) -> None:
    if not sources:
        raise MergeInputError("give at least one result directory to merge")
    d = dest.resolve()
    for src in sources:
        if not src.exists():
            raise MergeInputError(f"{src} does not exist")
        if not src.is_dir():
            raise MergeInputError(f"{src} is not a directory")
        s = src.resolve()
        if s == d or d in s.parents:
            raise MergeInputError(f"source {src} is --out {dest} or inside it; merge into a new directory")
        if s in d.parents:
            raise MergeInputError(f"--out {dest} is inside source {src}; it would be read back as a source")
    if dest.exists() and not dest.is_dir():
        raise MergeInputError(f"--out {dest} exists and is not a directory")


def _existing(dest: Path, report: MergeReport) -> dict[tuple[str, Cell], Version]:
    """Documents already merged into ``dest``; a result set not laid out by machine is refused."""
    loaded = load_results(dest)
    found: dict[tuple[str, Cell], Version] = {}
    for doc, file in zip(loaded.docs, loaded.files):
        parts = file.relative_to(dest).parts
        if len(parts) < 3 or parts[1] != "cells":
            raise MergeInputError(
                f"--out {dest} already holds results not laid out by machine ({file}); merge into a new directory"
            )
        cell = Cell.from_dict(doc["cell"])
        found[(parts[0], cell)] = Version(doc, str(file), str(dest), fingerprint(doc))
    report.corrupt.extend(loaded.corrupt)
    return found


def _aside_file(dest: Path, tag: str, version: Version) -> Path:
    cell = Cell.from_dict(version.doc["cell"])
    name = cell_file(Path("."), cell).name.removesuffix(".json") + f"__{version.digest[:12]}.json"
    return dest / tag / CONFLICTS_DIR / cell.model / name


def merge_results(sources: list[Path], dest: Path) -> MergeReport:
    """Merge the result sets ``sources`` into ``dest`` (see the module docstring).

    Raises ``MergeInputError`` (one line) on bad input, before anything is written.
    """
    sources = [Path(s) for s in sources]
    dest = Path(dest)
    _check_inputs(sources, dest)
    report = MergeReport(dest=str(dest), sources=[str(s) for s in sources])
    existing = _existing(dest, report) if dest.exists() else {}
    groups: dict[tuple[str, Cell], list[Version]] = defaultdict(list)
    for key, version in existing.items():
        groups[key].append(version)
    for src in sources:
        loaded = load_results(src)
        report.corrupt.extend(loaded.corrupt)
        if not loaded.docs:
            report.empty_sources.append(str(src))
        for doc, file in zip(loaded.docs, loaded.files):
            report.read += 1
            key = (machine_tag_of(doc), Cell.from_dict(doc["cell"]))
            groups[key].append(Version(doc, str(file), str(src), fingerprint(doc)))

    for (tag, cell), versions in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1].key())):
        unique: dict[str, Version] = {}
        for v in versions:
            if v.digest in unique:
                if v.source != str(dest):
                    report.duplicates += 1
                continue
            unique[v.digest] = v
        kept = max(unique.values(), key=Version.rank)
        old = existing.get((tag, cell))
        if old is not None and old.digest == kept.digest:
            report.unchanged += 1
        else:
            write_result(dest / tag, kept.doc)
            report.written += 1
        if len(unique) > 1:
            aside: list[tuple[Version, str]] = []
            for v in sorted(unique.values(), key=Version.rank, reverse=True):
                if v.digest == kept.digest:
                    continue
                target = _aside_file(dest, tag, v)
                if not target.exists():
                    documents.write_json(target, v.doc)
                aside.append((v, str(target)))
            report.conflicts.append(Conflict(tag, cell, kept, aside))

    _check_shards(sources, dest, report)
    _write_summaries(dest, report)
    documents.write_json(dest / MERGE_RECORD, report.to_dict())
    return report


def _check_shards(sources: list[Path], dest: Path, report: MergeReport) -> None:
    """From the sources' shard manifests: shards of a plan not given, and cells of the plan with
    no document in the merged set (a shard not given, or a job that died before writing them)."""
    from kit.run.shard import SHARD_MANIFEST, read_shard_manifest

    plans: dict[str, dict[str, Any]] = {}
    for src in sources:
        file = src / SHARD_MANIFEST
        if not os.path.lexists(file):  # a FIFO or dangling link named shard.json is reported, not skipped
            continue
        try:
            man = read_shard_manifest(file)
            plan, k, n = str(man["plan"]), int(man["shard"]), int(man["of"])
            planned = [Cell.from_dict(c) for c in man["planned"]]
        except DocumentError as exc:
            report.shard_problems.append(f"unreadable shard manifest {exc}")
            continue
        except (ValueError, KeyError, TypeError) as exc:
            report.shard_problems.append(f"unreadable shard manifest {file}: {one_line(exc)}")
            continue
        entry = plans.setdefault(plan, {"of": n, "shards": set(), "planned": set()})
        entry["shards"].add(k)
        entry["planned"].update(planned)
    if not plans:
        return
    merged = {Cell.from_dict(d["cell"]) for d in load_results(dest).docs}
    for plan, entry in sorted(plans.items()):
        missing = sorted(set(range(1, entry["of"] + 1)) - entry["shards"])
        if missing:
            report.shard_problems.append(
                f"plan {plan}: shard(s) {', '.join(map(str, missing))} of {entry['of']} not among the sources"
            )
        report.missing_cells.extend(sorted(c.key() for c in entry["planned"] - merged))


def _write_summaries(dest: Path, report: MergeReport) -> None:
    from kit.results.summary import write_summary_csv

    for machine_dir in sorted(p for p in dest.iterdir() if p.is_dir()) if dest.exists() else []:
        docs = load_results(machine_dir).docs  # its cells/ only: conflicts/ is not a result directory
        if not docs:
            continue
        report.machines[machine_dir.name] = len(docs)
        write_summary_csv(machine_dir, docs)
