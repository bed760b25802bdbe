"""Which documents validate may use, and looking them up by cell.

`screen_results` sorts documents into results and accuracy documents, each checked against its
schema by `kit.documents` (format checking included); every other document is rejected with its
one-line reason, so one bad file never hides the rest. `ResultIndex` then finds a cell's newest ok
document per machine, or says why there is none. `load_accuracy_docs` reads the accuracy documents
(``*.accuracy.json``) that `qkit accuracy` writes under a results directory.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kit import documents
from kit.claims.accuracy import ACCURACY_KIND
from kit.claims.validate.machines import Machine, machine_of
from kit.claims.validate.values import Missing
from kit.errors import one_line
from kit.hardware.gpus import same_hardware_name

CellKey = tuple[str, str, str, int]


@dataclass
class Screened:
    """Result documents split into usable results, accuracy documents and rejected ones."""

    results: list[dict[str, Any]] = field(default_factory=list)
    accuracy: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)


def result_problem(doc: Any) -> str | None:
    """One line saying why ``doc`` is not a valid result document, or None."""
    return documents.problem(doc, "result")


def screen_results(docs: Iterable[Any], names: list[str] | None = None) -> Screened:
    """Sort documents into results and accuracy documents; every other one is rejected with its reason."""
    out = Screened()
    for i, doc in enumerate(docs):
        name = names[i] if names and i < len(names) else f"document #{i}"
        is_accuracy = isinstance(doc, dict) and doc.get("kind") == ACCURACY_KIND
        problem = documents.problem(doc, "accuracy" if is_accuracy else "result")
        if problem:
            out.rejected.append((name, one_line(problem)))
        elif is_accuracy:
            out.accuracy.append(doc)
        else:
            out.results.append(doc)
    return out


def load_accuracy_docs(results_dir: Path) -> tuple[list[dict[str, Any]], list[str], list[tuple[str, str]]]:
    """Accuracy documents (``*.accuracy.json`` anywhere under the results dir): docs, names, refused
    files with their one-line reason (unreadable, not strict JSON, or breaking the accuracy schema)."""
    loaded = documents.read_many(sorted(results_dir.rglob("*.accuracy.json")), "accuracy")
    return loaded.docs, [str(f) for f in loaded.files], loaded.rejected


def cell_key(doc: dict[str, Any]) -> CellKey:
    c = doc["cell"]
    return (c["model"], c["path"], c["device"], c["batch_size"])


def cell_name(doc: dict[str, Any]) -> str:
    model, path, device, batch = cell_key(doc)
    return f"{model}/{path}/{device}/bs{batch}"


class ResultIndex:
    """Result and accuracy documents, looked up by cell; remembers which machine measured what."""

    def __init__(self, results: list[dict[str, Any]], accuracy: list[dict[str, Any]] | None = None) -> None:
        self.by_cell: dict[CellKey, list[dict[str, Any]]] = defaultdict(list)
        for doc in results:
            self.by_cell[cell_key(doc)].append(doc)
        self.accuracy: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for doc in accuracy or []:
            self.accuracy[(doc["model"], doc["path"])].append(doc)
        # The machine that measured the most cells is the run's main machine: preferred on ties.
        self.rank = Counter(machine_of(d) for d in results if d.get("status") == "ok")
        self.machines = Counter(machine_of(d) for d in results)
        self.environments: list[dict[str, Any]] = [
            env for d in results if isinstance(env := d.get("environment"), dict)
        ]

    def docs(self, model: str, path: str, device: str | None, batch: int | None) -> list[dict[str, Any]]:
        return [
            doc
            for (m, p, d, b), docs in self.by_cell.items()
            if m == model and p == path and (device is None or d == device) and (batch is None or b == batch)
            for doc in docs
        ]

    def ok_by_machine(
        self, model: str, path: str, device: str | None, batch: int | None
    ) -> dict[Machine, dict] | Missing:
        """The newest ok document per machine for the cell, or why there is none."""
        docs = self.docs(model, path, device, batch)
        ok = [d for d in docs if d.get("status") == "ok"]
        if not ok:
            return Missing(self._why_missing(model, path, device, batch, docs))
        best: dict[Machine, dict] = {}
        # Least preferred first, so the last one kept per machine is batch 1 and the newest: a rerun
        # supersedes an older document of the same cell.
        for doc in sorted(ok, key=lambda d: (d["cell"]["batch_size"] == 1, str(d.get("finished_utc")))):
            best[machine_of(doc)] = doc
        return best

    def _why_missing(
        self, model: str, path: str, device: str | None, batch: int | None, docs: list[dict[str, Any]]
    ) -> str:
        cell = f"{model} {path} on {device or 'any device'}" + (f" batch {batch}" if batch else "")
        if docs:
            reasons = sorted({f"{d.get('status')}: {one_line(str(d.get('reason')), 160)}" for d in docs})
            return f"{cell} was not measured ({'; '.join(reasons[:2])})"
        others = sorted({d for (m, p, d, _b) in self.by_cell if m == model and p == path and d != device})
        if device and others:
            return f"{cell}: measured on {', '.join(others)} only, which is not used for a {device} comparison"
        return f"no result for {cell}"

    def pick(self, machines: Iterable[Machine], claimed: str | None) -> Machine:
        """Prefer the claimed hardware, then the run's main machine, then the name."""
        return min(machines, key=lambda m: (not same_hardware_name(claimed, m.name), -self.rank[m], m.name))

    def measuring(self, device: str) -> list[Machine]:
        """The machines that measured at least one cell on ``device`` (a box that only skipped them does not count)."""
        return sorted(m for m, n in self.rank.items() if n and m.device == device)

    def absent_reason(self, machine: Machine, cells: Iterable[tuple[str, str]], device: str, batch: int | None) -> str:
        """Why ``machine`` gives no measurement for a claim that needs ``cells`` (model, path)."""
        cells = list(dict.fromkeys(cells))
        problems = []
        for model, path in cells:
            docs = [d for d in self.docs(model, path, device, batch) if machine_of(d) == machine]
            if any(d.get("status") == "ok" for d in docs):
                continue
            what = f"{model} {path}"
            if docs:
                d = max(docs, key=lambda d: str(d.get("finished_utc")))
                problems.append(f"{what}: {d.get('status')}: {one_line(str(d.get('reason')), 120)}")
            else:
                problems.append(f"{what}: no result")
        if not problems:
            return f"not measured on {machine.label()}: its results for these cells lack a usable value"
        head = (
            f"not measured on {machine.label()}"
            if len(cells) == 1
            else f"{len(problems)} of the {len(cells)} cells needed are not measured on {machine.label()}"
        )
        more = f"; ... (+{len(problems) - 2} more)" if len(problems) > 2 else ""
        return f"{head} ({'; '.join(problems[:2])}{more})"
