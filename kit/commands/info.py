"""``qkit models`` and ``qkit env``: what the kit knows about the models and this machine."""

from __future__ import annotations

import json
import sys

import click

from kit.commands.common import command_line


@click.command()
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
            f"{_millions(spec.published_params, '.1f'):>11} {spec.real_params / 1e6:>10.2f}M"
        )


@click.command()
@click.option("--check", is_flag=True, help="Report known stack problems; exit 1 if any.")
@click.option("--json", "as_json", is_flag=True, help="Print the environment as JSON.")
def env(check: bool, as_json: bool) -> None:
    """Show the environment recorded with every result (and, with --check, its known problems)."""
    from kit.measure.environment import collect_environment, math_settings

    data = collect_environment(command_line())
    data["math"] = math_settings()
    if as_json:
        click.echo(json.dumps(data, indent=1, default=str))
    else:
        cpu, gpu = data["cpu"], data["gpu"]
        click.echo(f"python {data['python']} on {data['os']}")
        click.echo(
            f"cpu    {cpu['model']} ({cpu['usable_cores']} usable cores) isa: "
            + ", ".join(k for k, v in cpu["isa"].items() if v)
        )
        click.echo(f"gpu    {gpu['name'] if gpu else 'none'}")
        click.echo("pkgs   " + ", ".join(f"{k} {v}" for k, v in data["packages"].items() if v))
        click.echo(f"kit    {data['kit']['version']} ({data['kit']['git_commit'] or 'no git'})")
    if check:
        from kit.run.stack_check import run_stack_checks

        problems = run_stack_checks()
        for p in problems:
            click.echo(f"PROBLEM {p.id}: {p.message}")
        click.echo(f"{len(problems)} stack problem(s) found")
        sys.exit(1 if problems else 0)


def _millions(count: int | None, spec: str) -> str:
    """A parameter count in millions, or "-" where the study published none (a user's model)."""
    return "-" if count is None else f"{count / 1e6:{spec}}M"
