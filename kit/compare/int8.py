"""``qkit compare-int8``: every INT8 method beside its FP32 baseline, on the same inputs.

For one model and batch size, on each device asked for: every INT8 method the kit has (the
registry's paths of precision int8: torch.ao dynamic, bitsandbytes LLM.int8, ORT dynamic and static
QDQ) on every device and provider its path declares, each beside its declared FP32 baseline
(torch-fp32, ort-fp32). Cells go through the library runner
(`kit.run.reproduce.reproduce`, one child process per cell), so each row is an ordinary result
document under ``--out``. A row that cannot run here stays in the table with its reason.

Speedups are against FP32 *of the same runtime on the same device* (torch rows against
torch-fp32, ORT rows against ort-fp32 with the same provider); ORT rows also show the ratio to
torch-fp32. A ratio below 1 is written as "SLOWER", never hidden. Sizes are each row's serialized
model (the ONNX file, the safetensors/torch.save state dict) against its baseline's.

TensorRT rows run with ``--option provider=tensorrt`` in their own result directory
(``<out>/provider-tensorrt``): the provider is an option of the ORT paths, and one result
directory holds one document per (model, path, device, batch).
"""

from __future__ import annotations

import json
import math
import shlex
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

import click

from kit.paths.base import DEVICES, path_facts, reference_path
from kit.results import figures

STATISTIC = figures.REPORT_STATISTIC  # speedups here are ratios of medians (p50)

TENSORRT_DIR = "provider-tensorrt"
CHART_FILE = "compare-int8.png"
TABLE_FILE = "compare-int8.md"
JSON_FILE = "compare-int8.json"


@dataclass(frozen=True)
class Row:
    """One planned row: a path on a device, with a provider option for ORT where not the default."""

    path: str
    device: str
    provider: str | None = None  # the ``provider`` path option; None = the device's default
    role: str = "int8"  # "baseline" or "int8"

    @property
    def group(self) -> str:
        return self.provider or "default"

    @property
    def runtime(self) -> str:
        facts = path_facts().get(self.path)
        return facts.runtime if facts is not None else "torch"

    def label(self) -> str:
        where = self.device if not self.provider else f"{self.device}/{self.provider}"
        return f"{self.path} [{where}]"


def plan_rows(devices: list[str]) -> list[Row]:
    """The rows of the comparison, from the path registry: per device (in DEVICES order) and
    provider (the device's default, then the ones the paths declare), the FP32 baselines the INT8
    rows need, then the INT8 rows, each in display order."""
    facts = path_facts()
    int8 = [f for f in facts.values() if f.is_int8]
    rows: list[Row] = []
    for device in (d for d in DEVICES if d in devices):
        groups = dict.fromkeys(p for f in int8 if f.runs_on(device) for p in f.providers[device])
        for provider in groups:
            methods = [Row(f.name, device, provider) for f in int8 if provider in f.providers.get(device, ())]
            bases = dict.fromkeys(baseline_of(r) for r in methods)
            rows += sorted(bases, key=lambda r: facts[r.path].order)
            rows += methods
    return rows


def baseline_of(row: Row) -> Row:
    """The FP32 row a row is compared with: the path's declared baseline (same runtime), on the
    same device and provider."""
    facts = path_facts().get(row.path)
    base = facts.baseline if facts is not None else reference_path()
    return Row(base, row.device, row.provider, role="baseline")


# --------------------------------------------------------------------------- running


def group_dir(out: Path, group: str) -> Path:
    return out if group == "default" else out / f"provider-{group}"


def run_comparison(
    model: str,
    devices: list[str],
    out: Path,
    profile: str = "full",
    batch_size: int = 1,
    weights: str = "random",
    seed: int = 0,
    path_options: dict[str, Any] | None = None,
    executor_name: str = "process",
    force: bool = False,
) -> list[dict[str, Any]]:
    """Run every row through the runner (resuming finished cells) and return the table rows."""
    from kit.paths.base import path_names
    from kit.results.store import Cell
    from kit.run.cell import RunOptions
    from kit.run.executors import make_executor
    from kit.run.reproduce import reproduce

    rows = plan_rows(devices)
    known = set(path_names())
    executor = make_executor(executor_name)
    docs: dict[Row, dict[str, Any]] = {}
    try:
        for group in dict.fromkeys(r.group for r in rows):
            members = [r for r in rows if r.group == group and r.path in known]
            options = dict(path_options or {})
            if group != "default":
                options["provider"] = group
            opts = RunOptions(
                out_dir=str(group_dir(out, group)),
                profile=profile,
                weights=weights,
                seed=seed,
                path_options=options,
                command=_command_line(),
            )
            cells = [Cell(model, r.path, r.device, batch_size) for r in members]
            reproduce(cells, opts, executor, force=force, on_cell=_progress)
            docs.update(_load_group(group_dir(out, group), members, model, batch_size))
    finally:
        executor.close()
    return build_table(rows, docs, known)


def _progress(cell: Any, doc: dict[str, Any]) -> None:
    reason = f" ({doc['reason']})" if doc.get("reason") else ""
    click.echo(f"  {cell.key()}: {doc['status']}{reason}", err=True)


def _load_group(directory: Path, members: list[Row], model: str, batch_size: int) -> dict[Row, dict[str, Any]]:
    from kit.documents import DocumentError
    from kit.results.store import Cell, cell_file, read_result

    found: dict[Row, dict[str, Any]] = {}
    for row in members:
        file = cell_file(directory, Cell(model, row.path, row.device, batch_size))
        try:
            found[row] = read_result(file)
        except DocumentError as exc:
            found[row] = {"status": "failed", "reason": f"{file}: {exc}"}
    return found


def _command_line() -> str:
    return "qkit " + " ".join(shlex.quote(a) for a in sys.argv[1:])


# --------------------------------------------------------------------------- table


@dataclass
class TableRow:
    label: str
    path: str
    device: str
    provider: str | None
    role: str
    status: str
    reason: str | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    baseline: str | None = None
    speedup: float | None = None
    speedup_vs_torch_fp32: float | None = None
    size_mb: float | None = None
    size_ratio: float | None = None
    cosine: float | None = None
    max_abs_error: float | None = None
    top1_agreement: float | None = None
    top1_n: int | None = None
    top1_ci95: tuple[float, float] | None = None
    trained_weights: bool = False
    memory_mb: float | None = None
    memory_phase: str = figures.DEFAULT_MEMORY_PHASE
    memory_reduction_pct: float | None = None
    notes: list[str] = field(default_factory=list)


def build_table(rows: list[Row], docs: dict[Row, dict[str, Any]], known: set[str]) -> list[dict[str, Any]]:
    """One dict per planned row, with ratios against the row's baseline where both ran."""
    table = []
    for row in rows:
        doc = docs.get(row)
        if row.path not in known:
            entry = TableRow(
                row.label(),
                row.path,
                row.device,
                row.provider,
                row.role,
                "skipped",
                f"path {row.path} is not available in this build of the kit (module not installed)",
            )
        elif doc is None:
            entry = TableRow(row.label(), row.path, row.device, row.provider, row.role, "skipped", "not run")
        else:
            entry = _entry(row, doc)
        if entry.status == "ok":
            _add_ratios(entry, row, docs)
        table.append(asdict(entry))
    return table


def _entry(row: Row, doc: dict[str, Any]) -> TableRow:
    entry = TableRow(
        row.label(), row.path, row.device, row.provider, row.role, doc.get("status", "failed"), doc.get("reason")
    )
    info = doc.get("path_info") or {}
    entry.provider = info.get("execution_provider") or row.provider
    if entry.status != "ok":
        return entry
    latency, size, fid = doc.get("latency") or {}, doc.get("size") or {}, doc.get("fidelity") or {}
    entry.p50_ms, entry.p99_ms = latency.get("p50"), latency.get("p99")
    entry.size_mb = size["bytes"] / 2**20 if size.get("bytes") is not None else None
    entry.cosine, entry.max_abs_error = fid.get("cosine"), fid.get("max_abs_error")
    agreement = figures.top1_agreement(doc)
    if agreement is not None:
        entry.top1_agreement, entry.top1_n, entry.top1_ci95 = agreement.value, agreement.n, agreement.ci95
    entry.trained_weights = figures.trained_weights(doc)
    entry.memory_mb = figures.memory_mb(doc, entry.memory_phase)
    entry.notes += list(latency.get("noise_warnings") or [])
    if fid.get("finite") is False:
        entry.notes.append("output has non-finite values")
    return entry


def _ok(doc: dict[str, Any] | None) -> TypeGuard[dict[str, Any]]:
    return doc is not None and doc.get("status") == "ok" and bool(doc.get("latency"))


def _add_ratios(entry: TableRow, row: Row, docs: dict[Row, dict[str, Any]]) -> None:
    base = baseline_of(row)
    entry.baseline = base.label()
    base_doc = docs.get(base)
    if row != base and _ok(base_doc):
        entry.speedup = figures.speedup(docs.get(row), base_doc, STATISTIC)
        entry.memory_reduction_pct = figures.memory_reduction_pct(docs.get(row), base_doc, entry.memory_phase)
        base_size = (base_doc.get("size") or {}).get("bytes")
        if base_size and entry.size_mb is not None:
            entry.size_ratio = entry.size_mb * 2**20 / base_size
        if entry.speedup is not None and entry.speedup < 1.0:
            entry.notes.insert(0, f"SLOWER than {base.path} ({entry.speedup:.2f}x)")
    elif row != base:
        entry.notes.append(f"no speedup: baseline {base.label()} did not run")
    torch_doc = docs.get(Row(reference_path(), row.device, role="baseline"))
    if row.runtime == "onnxruntime" and _ok(torch_doc) and entry.p50_ms:
        entry.speedup_vs_torch_fp32 = figures.speedup(docs.get(row), torch_doc, STATISTIC)


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:{spec}}{suffix}"


def _top1(r: dict[str, Any]) -> str:
    if r["top1_agreement"] is None:
        return "-"
    n = f"n={r['top1_n']}" if r["top1_n"] else "n=?"
    ci = r["top1_ci95"]
    text = f"{r['top1_agreement']:.0%} ({n}" + (f", CI {ci[0]:.0%}-{ci[1]:.0%})" if ci else ")")
    return text if r["trained_weights"] else f"[untrained: {text}]"


def markdown_table(model: str, batch_size: int, table: list[dict[str, Any]]) -> str:
    """The comparison as a markdown table, then one line per row that did not run."""
    head = (
        "| method [device/provider] | provider used | p50 ms | p99 ms | speedup vs FP32 "
        "(same runtime) | vs torch-fp32 | inference-phase MiB | mem. reduction | size MB | size vs FP32 "
        "| cosine | max abs err | top-1 agreement | notes |"
    )
    lines = [f"# INT8 vs FP32: {model}, batch {batch_size}", "", head, "|" + "---|" * 14]
    untrained = any(r["status"] == "ok" and not r["trained_weights"] for r in table)
    for r in table:
        if r["status"] != "ok":
            continue
        speed = _fmt(r["speedup"], ".2f", "x") if r["role"] != "baseline" else "baseline"
        lines.append(
            f"| {r['label']} | {r['provider'] or '-'} | {_fmt(r['p50_ms'], '.2f')} | {_fmt(r['p99_ms'], '.2f')} "
            f"| {speed} | {_fmt(r['speedup_vs_torch_fp32'], '.2f', 'x')} | {_fmt(r['memory_mb'], '.0f')} "
            f"| {_fmt(r['memory_reduction_pct'], '.1f', ' %')} | {_fmt(r['size_mb'], '.1f')} "
            f"| {_fmt(r['size_ratio'], '.3f')} | {_fmt(r['cosine'], '.5f')} | {_fmt(r['max_abs_error'], '.3g')} "
            f"| {_top1(r)} | {'; '.join(r['notes']) or ''} |"
        )
    not_run = [r for r in table if r["status"] != "ok"]
    if not_run:
        lines += ["", "Rows that did not run:", ""]
        lines += [f"- {r['label']}: {r['status']}: {r['reason']}" for r in not_run]
    lines += [
        "",
        f"{figures.speedup_label(STATISTIC)}, FP32 of the same runtime, device and provider "
        "(torch rows: torch-fp32; ORT rows: ort-fp32). "
        f"Memory: {figures.PHASE_WORDS[figures.DEFAULT_MEMORY_PHASE]} above the process baseline on CPU "
        f"(torch's allocator on CUDA); {figures.memory_label(figures.DEFAULT_MEMORY_PHASE)}. "
        "Fidelity against torch-fp32 on CPU, same weights and seeded inputs; top-1 agreement with its n "
        "and Wilson 95% interval. Size: the serialized model each row loads.",
    ]
    if untrained:
        lines.append(
            f"Fidelity here is {figures.UNTRAINED_LABEL}: top-1 agreement on random weights is shown in brackets, "
            "not as a figure of the published model."
        )
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- chart


def plot_chart(model: str, batch_size: int, table: list[dict[str, Any]], target: Path) -> Path | None:
    """Horizontal bars of p50 latency (whisker to p99), one colour per device/provider."""
    ok = [r for r in table if r["status"] == "ok" and r["p50_ms"]]
    if not ok:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    groups = list(dict.fromkeys(_group_name(r) for r in ok))
    colours = {g: plt.get_cmap("tab10")(i % 10) for i, g in enumerate(groups)}
    fig, ax = plt.subplots(figsize=(12, 0.5 * len(ok) + 2.0))
    ys = list(range(len(ok)))[::-1]
    p50 = [r["p50_ms"] for r in ok]
    p99 = [max(r["p99_ms"] or r["p50_ms"], r["p50_ms"]) for r in ok]
    # Rows can differ by 100x (a tiny model, a GPU beside a CPU): a log axis keeps every bar visible.
    log = max(p99) / min(p50) > 20
    left = min(p50) / 3 if log else 0.0
    ax.barh(
        ys,
        [v - left for v in p50],
        left=left,
        xerr=[[0.0] * len(ok), [b - a for a, b in zip(p50, p99)]],
        color=[colours[_group_name(r)] for r in ok],
        capsize=3,
        edgecolor="black",
        linewidth=0.5,
    )
    for y, r, end in zip(ys, ok, p99):
        ax.text(end, y, "  " + _bar_note(r), va="center", fontsize=8)
    ax.set_yticks(ys)
    ax.set_yticklabels([r["label"] for r in ok], fontsize=8)
    ax.set_xlabel("latency per batch (ms): bar = p50, whisker = p99" + (", log scale" if log else ""))
    ax.set_ylabel("method [device/provider]")
    skipped = len(table) - len(ok)
    ax.set_title(
        f"INT8 vs FP32 latency: {model}, batch {batch_size}"
        + (f" ({skipped} rows did not run; see the table)" if skipped else "")
    )
    ax.legend(
        handles=[Patch(color=colours[g], label=g) for g in groups],
        title="device / runtime",
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize=8,
    )
    if log:
        ax.set_xscale("log")
        ax.set_xlim(left, max(p99) * 8)
    else:
        ax.set_xlim(0, max(p99) * 1.35)
    fig.tight_layout()
    fig.savefig(target, dpi=120)
    plt.close(fig)
    return target


def _group_name(r: dict[str, Any]) -> str:
    if Row(r["path"], r["device"]).runtime == "onnxruntime":
        provider = (r["provider"] or "default provider").replace("ExecutionProvider", " EP")
        return f"{r['device']} / ONNX Runtime {provider}"
    return f"{r['device']} / PyTorch"


def _bar_note(r: dict[str, Any]) -> str:
    if r["role"] == "baseline":
        return "FP32 baseline"
    if r["speedup"] is None:
        return ""
    return f"{r['speedup']:.2f}x" + (" SLOWER" if r["speedup"] < 1 else "")


def write_outputs(model: str, batch_size: int, table: list[dict[str, Any]], out: Path) -> dict[str, Path | None]:
    out.mkdir(parents=True, exist_ok=True)
    (out / TABLE_FILE).write_text(markdown_table(model, batch_size, table))
    (out / JSON_FILE).write_text(
        json.dumps({"model": model, "batch_size": batch_size, "rows": table}, indent=1, allow_nan=False, default=str)
        + "\n"
    )
    chart = plot_chart(model, batch_size, table, out / CHART_FILE)
    return {"table": out / TABLE_FILE, "json": out / JSON_FILE, "chart": chart}
