"""The ``qkit`` command line: thin; parsing, calling the library, printing.

Exit codes: 0 success, 1 a check failed (validate/audit/env --check), 2 bad input, 130 Ctrl-C.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Any

import click

DEFAULT_RESULTS_ROOT = Path("results")


class BadInput(click.ClickException):
    """One line, exit 2."""

    exit_code = 2

    def show(self, file: Any = None) -> None:
        click.echo(f"qkit: error: {self.format_message()}", err=True)


def _split(values: tuple[str, ...]) -> list[str]:
    out: list[str] = []
    for v in values:
        out.extend(x for x in v.replace(",", " ").split() if x)
    return out


def _check_names(kind: str, given: list[str], valid: list[str], hidden: tuple[str, ...] = ()) -> None:
    """``hidden`` names are accepted but not advertised (the tiny test models)."""
    unknown = [g for g in given if g not in valid and g not in hidden]
    if unknown:
        raise BadInput(f"unknown {kind} {', '.join(map(repr, unknown))}; valid {kind}s: {', '.join(valid)}")


def _command_line() -> str:
    return "qkit " + " ".join(shlex.quote(a) for a in sys.argv[1:])


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="qkit")
def main() -> None:
    """qkit: re-run a published vision-model quantization study and check its claims."""


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the registry as JSON.")
def models(as_json: bool) -> None:
    """List the study's 16 models: checkpoint, head, input size, published and real parameters."""
    from kit.models.registry import MODELS

    if as_json:
        from dataclasses import asdict

        click.echo(json.dumps({k: asdict(v) for k, v in MODELS.items()}, indent=1, default=str))
        return
    click.echo(f"{'model':32} {'checkpoint':44} {'head':10} {'px':>4} {'published':>11} {'real':>11}")
    for spec in MODELS.values():
        click.echo(
            f"{spec.id:32} {spec.checkpoint:44} {spec.head:10} {spec.image_size:>4} "
            f"{spec.published_params / 1e6:>10.1f}M {spec.real_params / 1e6:>10.2f}M"
        )


@main.command()
@click.option("--check", is_flag=True, help="Report known stack problems; exit 1 if any.")
@click.option("--json", "as_json", is_flag=True, help="Print the environment as JSON.")
def env(check: bool, as_json: bool) -> None:
    """Show the environment recorded with every result (and, with --check, its known problems)."""
    from kit.measure.environment import collect_environment, math_settings

    data = collect_environment(_command_line())
    data["math"] = math_settings()
    if as_json:
        click.echo(json.dumps(data, indent=1, default=str))
    else:
        cpu, gpu = data["cpu"], data["gpu"]
        click.echo(f"python {data['python']} on {data['os']}")
        click.echo(f"cpu    {cpu['model']} ({cpu['usable_cores']} usable cores) isa: "
                   + ", ".join(k for k, v in cpu["isa"].items() if v))
        click.echo(f"gpu    {gpu['name'] if gpu else 'none'}")
        click.echo("pkgs   " + ", ".join(f"{k} {v}" for k, v in data["packages"].items() if v))
        click.echo(f"kit    {data['kit']['version']} ({data['kit']['git_commit'] or 'no git'})")
    if check:
        from kit.stack_check import run_stack_checks

        problems = run_stack_checks()
        for p in problems:
            click.echo(f"PROBLEM {p.id}: {p.message}")
        click.echo(f"{len(problems)} stack problem(s) found")
        sys.exit(1 if problems else 0)


def _validate_matrix_names(models: list[str], paths: list[str], devices: list[str]) -> None:
    from kit.models.registry import model_ids
    from kit.models.tiny import tiny_ids
    from kit.paths.base import DEVICES, path_names

    _check_names("model", models, model_ids(), hidden=tuple(tiny_ids()))
    _check_names("path", paths, path_names())
    _check_names("device", devices, list(DEVICES))


def _run_options(out: Path, profile: str, weights: str, seed: int, sweep: list[int], opts: dict) -> Any:
    from kit.run.cell import RunOptions
    from kit.run.profiles import PROFILES

    if profile not in PROFILES:
        raise BadInput(f"unknown profile {profile!r}; valid profiles: {', '.join(PROFILES)}")
    if weights not in ("random", "hub") and not Path(weights).is_dir():
        raise BadInput(f"--weights {weights!r} is neither 'random', 'hub' nor a directory")
    return RunOptions(
        out_dir=str(out), profile=profile, weights=weights, seed=seed, batch_sweep=tuple(sweep),
        path_options=opts, command=_command_line(),
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


def _parse_path_options(values: tuple[str, ...]) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise BadInput(f"--option takes KEY=VALUE, got {item!r}")
        try:
            opts[key] = json.loads(raw)
        except json.JSONDecodeError:
            opts[key] = raw
    return opts


_common_run_options = [
    click.option("--profile", default="full", show_default=True, help="quick | full | study"),
    click.option("--weights", default="random", show_default=True,
                 help="random (seeded, no download) | hub | a local checkpoint directory"),
    click.option("--seed", default=0, show_default=True, type=int),
    click.option("--batch-sweep", default=None, help="Also time these batch sizes, e.g. 1,4,8,16,32."),
    click.option("--option", "path_option", multiple=True, help="Path option KEY=VALUE (repeatable)."),
]


def _with_run_options(fn: Any) -> Any:
    for deco in reversed(_common_run_options):
        fn = deco(fn)
    return fn


@main.command()
@click.option("--model", required=True)
@click.option("--path", "path_name", required=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--batch-size", default=1, show_default=True, type=int)
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Result directory.")
@click.option("--inline", is_flag=True, help="Measure in this process instead of a child process.")
@_with_run_options
def bench(model: str, path_name: str, device: str, batch_size: int, out: Path | None, inline: bool,
          profile: str, weights: str, seed: int, batch_sweep: str | None, path_option: tuple[str, ...]) -> None:
    """Measure one cell and print its summary (the document is written under --out)."""
    from kit.run.executors import make_executor
    from kit.run.reproduce import machine_tag, reproduce

    _validate_matrix_names([model], [path_name], [device])
    if batch_size < 1:
        raise BadInput("--batch-size must be >= 1")
    out = out or DEFAULT_RESULTS_ROOT / machine_tag()
    opts = _run_options(out, profile, weights, seed, _parse_sweep(batch_sweep), _parse_path_options(path_option))
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


@main.command()
@click.option("--models", "models_opt", multiple=True, help="Model ids (comma/space separated); default all 16.")
@click.option("--paths", "paths_opt", multiple=True, help="Path names; default every path.")
@click.option("--devices", "devices_opt", multiple=True, help="cpu, cuda; default both.")
@click.option("--batch-sizes", "batch_opt", default="1", show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Result directory (default results/<machine>); rerunning resumes.")
@click.option("--force", is_flag=True, help="Redo cells that already have a result.")
@click.option("--executor", "executor_name", default="process", show_default=True, help="process | inline | ray")
@click.option("--shard", default=None, help="K/N: run the K-th of N cost-balanced shards.")
@click.option("--address", "ray_address", default=None,
              help="Ray cluster for --executor ray (default: $RAY_ADDRESS, else a local Ray).")
@click.option("--summary/--no-summary", default=True, help="Write summary.csv after the run.")
@_with_run_options
def reproduce(models_opt: tuple[str, ...], paths_opt: tuple[str, ...], devices_opt: tuple[str, ...],
              batch_opt: str, out: Path | None, force: bool, executor_name: str, shard: str | None,
              ray_address: str | None, summary: bool, profile: str, weights: str, seed: int, batch_sweep: str | None,
              path_option: tuple[str, ...]) -> None:
    """Run the study's matrix (models x paths x devices x batch sizes) and write one document per cell."""
    from kit.models.registry import model_ids
    from kit.paths.base import DEVICES, path_names
    from kit.results.store import load_results
    from kit.results.summary import write_summary_csv
    from kit.run import reproduce as rp
    from kit.run.executors import make_executor

    models = _split(models_opt) or model_ids()
    paths = _split(paths_opt) or path_names()
    devices = _split(devices_opt) or list(DEVICES)
    _validate_matrix_names(models, paths, devices)
    batch_sizes = _parse_sweep(batch_opt) or [1]
    out = out or DEFAULT_RESULTS_ROOT / rp.machine_tag()
    opts = _run_options(out, profile, weights, seed, _parse_sweep(batch_sweep), _parse_path_options(path_option))
    cells = rp.plan_matrix(models, paths, devices, batch_sizes, defaults_only=not _split(paths_opt))
    if shard:
        from kit.run.shard import parse_shard, shard_cells, write_shard_manifest

        try:
            k, n = parse_shard(shard)
        except ValueError as exc:
            raise BadInput(str(exc)) from None
        planned, cells = cells, shard_cells(cells, k, n, profile)
        write_shard_manifest(out, planned, k, n, cells, profile)
    if ray_address and executor_name != "ray":
        raise BadInput("--address is for --executor ray")
    try:
        if executor_name == "ray":
            from kit.run.ray_executor import RayExecutor

            executor = RayExecutor(address=ray_address)
        else:
            executor = make_executor(executor_name)
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
    with tqdm(total=len(cells), unit="cell", dynamic_ncols=True, file=sys.stderr,
              disable=None if sys.stderr.isatty() else True) as bar:
        def on_cell(cell: Any, doc: dict[str, Any]) -> None:
            done[0] += 1
            bar.set_postfix_str(f"{cell.model} {cell.path} {cell.device}: {doc['status']}")
            bar.update(1)
            if not sys.stderr.isatty():
                click.echo(f"[{done[0]}/{len(cells)}] {cell.key()}: {doc['status']}"
                           + (f" ({doc.get('reason')})" if doc.get("reason") else ""), err=True)

        return rp.reproduce(cells, opts, executor, force=force, on_cell=on_cell)


def _register_optional_commands() -> None:
    """Commands that live with their library modules (claims, audit, report, onnx, scale-out)."""
    import importlib

    for module, names in (
        ("kit.claims.commands", ("claims", "validate", "accuracy")),
        ("kit.claims.audit.commands", ("audit",)),
        ("kit.report.commands", ("report",)),
        ("kit.compare_int8", ("compare_int8",)),
        ("kit.run.merge", ("merge",)),
    ):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name and module.startswith(exc.name):
                continue  # module not in this build
            raise
        for name in names:
            cmd = getattr(mod, name, None) or getattr(mod, f"{name}_cmd", None)
            if cmd is not None:
                main.add_command(cmd)


_register_optional_commands()


if __name__ == "__main__":
    main()
