"""``qkit bench`` (one cell) and ``qkit reproduce`` (the matrix)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from kit.commands.common import BadInput, check_names, checked_path_options, command_line, split

DEFAULT_RESULTS_ROOT = Path("results")


def _validate_matrix_names(models: list[str], paths: list[str], devices: list[str]) -> None:
    from kit.models.registry import model_ids
    from kit.models.tiny import tiny_ids
    from kit.paths.base import DEVICES, path_names

    check_names("model", models, model_ids(), hidden=tuple(tiny_ids()))
    check_names("path", paths, path_names())
    check_names("device", devices, list(DEVICES))


def _run_options(out: Path, profile: str, weights: str, seed: int, sweep: list[int], opts: dict) -> Any:
    from kit.run.cell import RunOptions
    from kit.run.profiles import PROFILES

    if profile not in PROFILES:
        raise BadInput(f"unknown profile {profile!r}; valid profiles: {', '.join(PROFILES)}")
    if weights not in ("random", "hub") and not Path(weights).is_dir():
        raise BadInput(f"--weights {weights!r} is neither 'random', 'hub' nor a directory")
    return RunOptions(
        out_dir=str(out),
        profile=profile,
        weights=weights,
        seed=seed,
        batch_sweep=tuple(sweep),
        path_options=opts,
        command=command_line(),
    )


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
        help="random (seeded, no download) | hub | a local checkpoint directory",
    ),
    click.option("--seed", default=0, show_default=True, type=int),
    click.option("--batch-sweep", default=None, help="Also time these batch sizes, e.g. 1,4,8,16,32."),
    click.option("--option", "path_option", multiple=True, help="Path option KEY=VALUE (repeatable)."),
]


def _with_run_options(fn: Any) -> Any:
    for deco in reversed(_common_run_options):
        fn = deco(fn)
    return fn


@click.command()
@click.option("--model", required=True)
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
) -> None:
    """Measure one cell and print its summary (the document is written under --out)."""
    from kit.run.executors import make_executor
    from kit.run.reproduce import machine_tag, reproduce

    _validate_matrix_names([model], [path_name], [device])
    if batch_size < 1:
        raise BadInput("--batch-size must be >= 1")
    out = out or DEFAULT_RESULTS_ROOT / machine_tag()
    path_options = checked_path_options(path_option, [path_name])
    opts = _run_options(out, profile, weights, seed, _parse_sweep(batch_sweep), path_options)
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
@click.option("--models", "models_opt", multiple=True, help="Model ids (comma/space separated); default all 16.")
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
) -> None:
    """Run the study's matrix (models x paths x devices x batch sizes) and write one document per cell."""
    from kit.models.registry import model_ids
    from kit.paths.base import DEVICES, path_names
    from kit.results.store import load_results
    from kit.results.summary import write_summary_csv
    from kit.run import reproduce as rp
    from kit.run.executors import make_executor

    models = split(models_opt) or model_ids()
    paths = split(paths_opt) or path_names()
    devices = split(devices_opt) or list(DEVICES)
    _validate_matrix_names(models, paths, devices)
    batch_sizes = _parse_sweep(batch_opt) or [1]
    out = out or DEFAULT_RESULTS_ROOT / rp.machine_tag()
    path_options = checked_path_options(path_option, paths)
    opts = _run_options(out, profile, weights, seed, _parse_sweep(batch_sweep), path_options)
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


def _run_with_progress(cells: list[Any], opts: Any, executor: Any, force: bool) -> Any:
    from tqdm import tqdm

    from kit.run import reproduce as rp

    done = [0]
    with tqdm(
        total=len(cells),
        unit="cell",
        dynamic_ncols=True,
        file=sys.stderr,
        disable=None if sys.stderr.isatty() else True,
    ) as bar:

        def on_cell(cell: Any, doc: dict[str, Any]) -> None:
            done[0] += 1
            bar.set_postfix_str(f"{cell.model} {cell.path} {cell.device}: {doc['status']}")
            bar.update(1)
            if not sys.stderr.isatty():
                click.echo(
                    f"[{done[0]}/{len(cells)}] {cell.key()}: {doc['status']}"
                    + (f" ({doc.get('reason')})" if doc.get("reason") else ""),
                    err=True,
                )

        return rp.reproduce(cells, opts, executor, force=force, on_cell=on_cell)
