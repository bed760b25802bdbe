"""``qkit compare-int8``: every INT8 method beside its FP32 baseline (library: `kit.compare.int8`)."""

from __future__ import annotations

from pathlib import Path

import click

from kit.commands.common import BadInput as _BadInput
from kit.commands.common import checked_path_options, quiet_libraries
from kit.compare.int8 import markdown_table, plan_rows, run_comparison, write_outputs

# --------------------------------------------------------------------------- command


def _check_inputs(model: str, devices: list[str], profile: str, calibration: str | None) -> None:
    from kit.models.registry import get_model
    from kit.paths.base import DEVICES
    from kit.run.profiles import PROFILES

    try:
        get_model(model)
    except KeyError as exc:
        raise _BadInput(str(exc).strip("'\"")) from None
    bad = [d for d in devices if d not in DEVICES]
    if bad or not devices:
        raise _BadInput(f"unknown device(s) {', '.join(bad) or '(none)'}; valid devices: {', '.join(DEVICES)}")
    if profile not in PROFILES:
        raise _BadInput(f"unknown profile {profile!r}; valid profiles: {', '.join(PROFILES)}")
    if calibration and not Path(calibration).is_dir():
        raise _BadInput(f"--calibration {calibration}: not a directory")


@click.command("compare-int8")
@click.option("--model", required=True, help="Model id (qkit models).")
@click.option("--devices", default="cpu,cuda", show_default=True, help="Comma-separated devices.")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Result directory (default results/compare-int8/<model>).",
)
@click.option("--profile", default="full", show_default=True, help="quick | full | study")
@click.option("--batch-size", default=1, show_default=True, type=click.IntRange(min=1))
@click.option("--weights", default="random", show_default=True, help="random | hub | a local checkpoint directory")
@click.option("--calibration", default=None, help="Image folder for static INT8 calibration (else synthetic).")
@click.option("--option", "options", multiple=True, help="Path option KEY=VALUE (repeatable).")
@click.option(
    "--executor",
    default="process",
    show_default=True,
    type=click.Choice(["process", "inline"]),
    help="Where cells run: a child process each (default), or this process.",
)
@click.option("--force", is_flag=True, help="Measure again cells already in --out.")
def compare_int8(
    model: str,
    devices: str,
    out: Path | None,
    profile: str,
    batch_size: int,
    weights: str,
    calibration: str | None,
    options: tuple[str, ...],
    executor: str,
    force: bool,
) -> None:
    """FP32 and every INT8 method side by side: latency, speedup, size, fidelity, provider."""
    device_list = [d for d in devices.replace(",", " ").split() if d]
    _check_inputs(model, device_list, profile, calibration)
    extra = {"calibration_dir": str(Path(calibration).resolve())} if calibration else {}
    paths = list(dict.fromkeys(r.path for r in plan_rows(device_list)))
    path_options = checked_path_options(options, paths, extra)
    quiet_libraries()
    out = out or Path("results") / "compare-int8" / model
    table = run_comparison(
        model,
        device_list,
        out,
        profile=profile,
        batch_size=batch_size,
        weights=weights,
        path_options=path_options,
        executor_name=executor,
        force=force,
    )
    files = write_outputs(model, batch_size, table, out)
    click.echo(markdown_table(model, batch_size, table))
    click.echo(f"table: {files['table']}\nchart: {files['chart'] or '(no row ran: no chart)'}\njson: {files['json']}")
