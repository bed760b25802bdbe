"""``qkit bench`` (one cell) and ``qkit reproduce`` (the matrix)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from kit.commands.common import BadInput, check_names, checked_path_options, command_line, quiet_libraries, split

DEFAULT_RESULTS_ROOT = Path("results")


def _validate_matrix_names(models: list[str], paths: list[str], devices: list[str]) -> None:
    from kit.models.registry import model_ids, user_model_ids
    from kit.models.tiny import tiny_ids
    from kit.paths.base import DEVICES, path_names

    check_names("model", models, model_ids() + user_model_ids(), hidden=tuple(tiny_ids()))
    check_names("path", paths, path_names())
    check_names("device", devices, list(DEVICES))


def _run_options(
    out: Path,
    profile: str,
    weights: str,
    seed: int,
    sweep: list[int],
    opts: dict,
    user_models: tuple[str, ...] = (),
    repeats: int | None = None,
) -> Any:
    from kit.run.cell import RunOptions
    from kit.run.profiles import PROFILES

    if profile not in PROFILES:
        raise BadInput(f"unknown profile {profile!r}; valid profiles: {', '.join(PROFILES)}")
    if weights not in ("random", "hub", "checkpoint") and not Path(weights).is_dir():
        raise BadInput(
            f"--weights {weights!r} is neither 'random', 'hub' nor a directory (nor 'checkpoint': each model's own)"
        )
    return RunOptions(
        out_dir=str(out),
        profile=profile,
        weights=weights,
        seed=seed,
        batch_sweep=tuple(sweep),
        path_options=opts,
        command=command_line(),
        user_models=user_models,
        repeats=repeats,
    )


def _user_models(models: list[str], models_file: Path | None, devices: list[str]) -> tuple[list[str], tuple[str, ...]]:
    """Resolve checkpoint directories among ``models`` and the models of ``models_file``: register
    them in this process, print what was derived and which paths apply, and return the model ids
    and the sources the cells' processes load again (`RunOptions.user_models`)."""
    from kit.models.registry import get_model, model_ids, user_model_ids
    from kit.models.user import describe, load_sources
    from kit.paths.applies import path_fit

    sources: list[str] = []
    ids: list[str] = []
    if models_file is not None:
        sources.append(str(models_file.resolve()))
        from_file = load_sources(sources[-1:])
    for m in models:
        if Path(m).is_dir() and m not in model_ids() and not m.startswith("tiny-"):  # an id wins over a folder
            sources.append(str(Path(m).resolve()))
            ids.extend(load_sources(sources[-1:]))
        else:
            ids.append(m)
    if not ids and models_file is not None:
        ids = from_file
    for model_id in dict.fromkeys(ids):
        spec = get_model(model_id) if model_id in user_model_ids() else None
        if spec is None:
            continue
        for line in describe(model_id):
            click.echo(line)
        click.echo("  paths (on this machine):")
        for fit in path_fit(spec, devices):
            click.echo(fit.line())
    return ids, tuple(sources)


def _parse_sweep(value: str | None) -> list[int]:
    if not value:
        return []
    try:
        sizes = [int(x) for x in value.replace(",", " ").split()]
    except ValueError:
        raise BadInput(f"--batch-sweep takes whole numbers, got {value!r}") from None
    if any(s < 1 for s in sizes):
        raise BadInput("--batch-sweep sizes must be >= 1")
    return sizes


_common_run_options = [
    click.option("--profile", default="full", show_default=True, help="quick | full | study"),
    click.option(
        "--weights",
        default="random",
        show_default=True,
        help="random (seeded, no download) | hub | checkpoint (each user model's own directory) | a directory",
    ),
    click.option("--seed", default=0, show_default=True, type=int),
    click.option("--batch-sweep", default=None, help="Also time these batch sizes, e.g. 1,4,8,16,32."),
    click.option("--option", "path_option", multiple=True, help="Path option KEY=VALUE (repeatable)."),
    click.option(
        "--repeats",
        type=click.IntRange(min=1),
        default=None,
        help="Measure each cell in N fresh processes; the CI then includes process-to-process spread "
        "(default: the profile's).",
    ),
]


def _with_run_options(fn: Any) -> Any:
    for deco in reversed(_common_run_options):
        fn = deco(fn)
    return fn


@click.command()
@click.option("--model", required=True, help="A model id, or a checkpoint directory (config.json [+ safetensors]).")
@click.option("--path", "path_name", required=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--batch-size", default=1, show_default=True, type=int)
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Result directory.")
@click.option("--inline", is_flag=True, help="Measure in this process instead of a child process.")
@_with_run_options
def bench(
    model: str,
    path_name: str,
    device: str,
    batch_size: int,
    out: Path | None,
    inline: bool,
    profile: str,
    weights: str,
    seed: int,
    batch_sweep: str | None,
    path_option: tuple[str, ...],
    repeats: int | None,
) -> None:
    """Measure one cell and print its summary (the document is written under --out)."""
    from kit.run.executors import make_executor
    from kit.run.reproduce import machine_tag, reproduce

    [model], user_models = _user_models([model], None, [device])
    _validate_matrix_names([model], [path_name], [device])
    quiet_libraries()
    if batch_size < 1:
        raise BadInput("--batch-size must be >= 1")
    out = out or DEFAULT_RESULTS_ROOT / machine_tag()
    path_options = checked_path_options(path_option, [path_name])
    opts = _run_options(out, profile, weights, seed, _parse_sweep(batch_sweep), path_options, user_models, repeats)
    from kit.results.store import Cell, cell_file, read_result

    cell = Cell(model, path_name, device, batch_size)
    summary = reproduce([cell], opts, make_executor("inline" if inline else "process"), force=True)
    doc = read_result(cell_file(out, cell))
    _print_doc(doc)
    if summary.interrupted:
        sys.exit(130)


def _print_doc(doc: dict[str, Any]) -> None:
    c = doc["cell"]
    head = f"{c['model']} {c['path']} {c['device']} bs{c['batch_size']}: {doc['status']}"
    if doc["status"] != "ok":
        click.echo(f"{head} ({doc['reason']})")
        return
    lat, fid = doc["latency"], doc["fidelity"]
    click.echo(
        f"{head}  p50 {lat['p50']:.3f} ms [95% CI {lat['p50_ci95'][0]:.3f}-{lat['p50_ci95'][1]:.3f}] "
        f"p99 {lat['p99']:.3f} ms cv {lat['cv']:.1%} n={lat['iterations']}  "
        f"{doc['throughput']['samples_per_s']:.2f} samples/s  peak {doc['memory']['peak_mb']:.0f} MiB  "
        f"size {doc['size']['bytes'] / 2**20:.1f} MiB  cosine {fid['cosine']:.6f}"
    )
    for w in lat.get("noise_warnings", []):
        click.echo(f"  warning: {w}")


@click.command()
@click.option(
    "--models",
    "models_opt",
    multiple=True,
    help="Model ids or checkpoint directories (comma/space separated); default all 16 (or the models file's).",
)
@click.option(
    "--models-file",
    type=click.Path(path_type=Path),
    default=None,
    help="Your own models (YAML/JSON: id, checkpoint directory or config, overrides); see docs/claims-format.md.",
)
@click.option("--paths", "paths_opt", multiple=True, help="Path names; default every path.")
@click.option("--devices", "devices_opt", multiple=True, help="cpu, cuda; default both.")
@click.option("--batch-sizes", "batch_opt", default="1", show_default=True)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Result directory (default results/<machine>); rerunning resumes.",
)
@click.option("--force", is_flag=True, help="Redo cells that already have a result.")
@click.option("--executor", "executor_name", default="process", show_default=True, help="process | inline | ray")
@click.option("--shard", default=None, help="K/N: run the K-th of N cost-balanced shards.")
@click.option(
    "--address",
    "ray_address",
    default=None,
    help="Ray cluster for --executor ray (default: $RAY_ADDRESS, else a local Ray).",
)
@click.option("--summary/--no-summary", default=True, help="Write summary.csv after the run.")
@_with_run_options
def reproduce(
    models_opt: tuple[str, ...],
    models_file: Path | None,
    paths_opt: tuple[str, ...],
    devices_opt: tuple[str, ...],
    batch_opt: str,
    out: Path | None,
    force: bool,
    executor_name: str,
    shard: str | None,
    ray_address: str | None,
    summary: bool,
    profile: str,
    weights: str,
    seed: int,
    batch_sweep: str | None,
    path_option: tuple[str, ...],
    repeats: int | None,
) -> None:
    """Run the study's matrix (models x paths x devices x batch sizes) and write one document per cell."""
    from kit.models.registry import model_ids
    from kit.paths.base import DEVICES, path_names
    from kit.results.store import load_results
    from kit.results.summary import write_summary_csv
    from kit.run import reproduce as rp
    from kit.run.executors import make_executor

    paths = split(paths_opt) or path_names()
    devices = split(devices_opt) or list(DEVICES)
    models, user_models = _user_models(split(models_opt), models_file, devices)
    models = models or model_ids()
    _validate_matrix_names(models, paths, devices)
    quiet_libraries()
    batch_sizes = _parse_sweep(batch_opt) or [1]
    out = out or DEFAULT_RESULTS_ROOT / rp.machine_tag()
    path_options = checked_path_options(path_option, paths)
    opts = _run_options(out, profile, weights, seed, _parse_sweep(batch_sweep), path_options, user_models, repeats)
    cells = rp.plan_matrix(models, paths, devices, batch_sizes, defaults_only=not split(paths_opt))
    if shard:
        from kit.run.shard import parse_shard, shard_cells, write_shard_manifest

        try:
            k, n = parse_shard(shard)
        except ValueError as exc:
            raise BadInput(str(exc)) from None
        planned, cells = cells, shard_cells(cells, k, n, profile)
        write_shard_manifest(out, planned, k, n, cells, profile)
    try:
        executor = make_executor(executor_name, address=ray_address)
    except ValueError:
        raise BadInput("--address is for --executor ray") from None
    except (KeyError, ImportError) as exc:
        raise BadInput(exc.args[0] if exc.args else str(exc)) from None
    click.echo(f"qkit reproduce: {len(cells)} cells -> {out} (profile {profile}, executor {executor.name})")
    result = _run_with_progress(cells, opts, executor, force)
    for name, why in result.corrupt:
        click.echo(f"corrupt result {name}: {why}; redone", err=True)
    if summary:
        loaded = load_results(out)
        write_summary_csv(out, loaded.docs)
    rp.link_latest(out)
    click.echo(result.line())
    if result.interrupted:
        click.echo("interrupted: finished cells are kept; rerun to resume", err=True)
        sys.exit(130)


def _expected_s(cells: list[Any], opts: Any, force: bool) -> list[float]:
    """Each cell's expected seconds from the shards' cost model (`kit.run.shard.cell_cost`, seconds on
    the kit's reference 2-core CPU machine): 0 for a cell already done, a fast skip for CUDA cells
    without CUDA, plus each model's once-per-run FP32 reference on its first cell."""
    from kit.results.store import cell_file
    from kit.run.shard import SKIP_COST_S, cell_cost, reference_cost

    try:
        import torch

        cuda = bool(torch.cuda.is_available())
    except ImportError:
        cuda = False
    out, seen = [], set()
    for c in cells:
        if not force and cell_file(Path(opts.out_dir), c).exists():
            out.append(0.0)
        elif c.device == "cuda" and not cuda:
            out.append(SKIP_COST_S)
        else:
            try:
                cost = cell_cost(c, opts.profile)
                if c.model not in seen:
                    seen.add(c.model)
                    cost += reference_cost(c.model, opts.profile)
            except (KeyError, ValueError):  # a model the cost model cannot price (a user checkpoint)
                cost = 0.0
            out.append(cost)
    return out


def _process_shares(cell: Any, opts: Any, expected_s: float) -> tuple[float, float]:
    """A cell's ``expected_s`` split as the runner spends it: its first process (with what comes
    before it), then each of its later processes (`kit.run.shard.cell_cost_parts`)."""
    from kit.run.shard import cell_cost_parts

    try:
        first, each, processes = cell_cost_parts(cell, opts.profile)
    except (KeyError, ValueError):
        return expected_s, 0.0
    total = first + (processes - 1) * each
    each *= expected_s / total if total > 0 and expected_s > 0 else 0.0
    return expected_s - (processes - 1) * each, each


def _calibration(cells: list[Any], opts: Any) -> tuple[float, int]:
    """How much slower this machine is than the cost model, from the cells it already measured
    (their recorded ``duration_s`` against their modelled cost): (scale, cells it rests on)."""
    from kit.results.store import cell_file
    from kit.run.shard import cell_cost

    measured = modelled = 0.0
    n = 0
    for c in cells:
        f = cell_file(Path(opts.out_dir), c)
        if not f.exists():
            continue
        try:
            import json

            doc = json.loads(f.read_text(encoding="utf-8"))
            if doc.get("status") != "ok" or not isinstance(doc.get("duration_s"), (int, float)):
                continue
            modelled += cell_cost(c, opts.profile)
        except (OSError, ValueError, KeyError):
            continue
        measured += float(doc["duration_s"])
        n += 1
    return (measured / modelled if n and modelled > 0 else 1.0), n


def _clock(seconds: float) -> str:
    seconds = max(0, round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}h{rest // 60:02d}m" if h else f"{rest // 60}m{rest % 60:02d}s"


def _run_with_progress(cells: list[Any], opts: Any, executor: Any, force: bool) -> Any:
    import time

    from tqdm import tqdm

    from kit.run import reproduce as rp

    scale, basis = _calibration(cells, opts)
    expected = [e * scale for e in _expected_s(cells, opts, force)]
    total = sum(expected)
    how = (
        f"calibrated by the {basis} cells already measured here"
        if basis
        else "priced on the kit's 2-core reference CPU; nothing measured here yet to calibrate it"
    )
    click.echo(
        f"expected: about {_clock(total)} for {sum(1 for e in expected if e > 0)} cells to run "
        f"(the shards' cost model, {how}; the ETA adapts as cells finish)",
        err=True,
    )
    # A cell's later processes run in later rounds: its first process is priced apart from them.
    shares = {c.key(): _process_shares(c, opts, e) for c, e in zip(cells, expected)}
    done, spent = [0], [0.0]
    start = time.monotonic()
    with tqdm(
        total=len(cells),
        unit="cell",
        dynamic_ncols=True,
        file=sys.stderr,
        disable=None if sys.stderr.isatty() else True,
    ) as bar:

        def eta_after(seconds: float) -> tuple[str, float]:
            spent[0] += seconds
            elapsed = time.monotonic() - start
            # Scale the model's remaining estimate by how fast this machine has been so far.
            pace = elapsed / spent[0] if spent[0] > 1.0 else 1.0
            return _clock((total - spent[0]) * pace), elapsed

        def on_round(cell: Any, process: int, doc: dict[str, Any]) -> None:
            each = shares.get(cell.key(), (0.0, 0.0))[1]
            planned = (doc.get("latency") or {}).get("processes_planned", process)
            eta, elapsed = eta_after(each)
            bar.set_postfix_str(f"ETA {eta} | process {process}/{planned} of {cell.model} {cell.path}")
            if not sys.stderr.isatty():
                lat = doc.get("latency") or {}
                p50 = f"median {lat['p50']:.4g} ms" if lat.get("p50") is not None else doc["status"]
                click.echo(
                    f"[process {process}/{planned}] {cell.key()}: {p50}  elapsed {_clock(elapsed)}, ETA {eta}",
                    err=True,
                )

        def on_cell(cell: Any, doc: dict[str, Any]) -> None:
            done[0] += 1
            eta, elapsed = eta_after(shares.get(cell.key(), (0.0, 0.0))[0])
            bar.set_postfix_str(f"ETA {eta} | {cell.model} {cell.path} {cell.device}: {doc['status']}")
            bar.update(1)
            if not sys.stderr.isatty():
                click.echo(
                    f"[{done[0]}/{len(cells)}] {cell.key()}: {doc['status']}"
                    + (f" ({doc.get('reason')})" if doc.get("reason") else "")
                    + f"  elapsed {_clock(elapsed)}, ETA {eta}",
                    err=True,
                )

        return rp.reproduce(cells, opts, executor, force=force, on_cell=on_cell, on_round=on_round)
