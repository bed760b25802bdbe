"""``qkit report``: write ``report.md`` and its figures from a results directory."""

from __future__ import annotations

from pathlib import Path

import click

DEFAULT_RESULTS = Path("results") / "latest"


@click.command("report")
@click.option(
    "--results",
    "results_dir",
    type=click.Path(path_type=Path),
    default=DEFAULT_RESULTS,
    show_default=True,
    help="Results directory (the one holding cells/).",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Where report.md and its PNGs go [default: <results>/report].",
)
@click.option(
    "--verdicts",
    "verdicts_file",
    type=click.Path(path_type=Path),
    default=None,
    help="validate's JSON [default: <results>/verdicts.json].",
)
@click.option(
    "--findings",
    "findings_file",
    type=click.Path(path_type=Path),
    default=None,
    help="audit's JSON [default: <results>/findings.json, else <results>/../findings.json].",
)
def report(results_dir: Path, out_dir: Path | None, verdicts_file: Path | None, findings_file: Path | None) -> None:
    """Write report.md with its figures: environment, measured matrix, claims and verdicts, findings."""
    from kit.report.markdown import build_report

    # Bad input is one line and exit 2 (the CLI's convention); a missing verdicts/findings file
    # named explicitly is bad input, a missing default one only means that step did not run.
    if not results_dir.is_dir():
        _bad(f"results directory {results_dir} does not exist (run `qkit reproduce` first, or pass --results)")
    for flag, file in (("--verdicts", verdicts_file), ("--findings", findings_file)):
        if file is not None and not file.is_file():
            _bad(f"{flag} {file} is not a file")
    result = build_report(results_dir, out_dir, verdicts_file, findings_file)
    if result.n_docs == 0:
        click.echo(f"qkit report: warning: no result documents under {results_dir}", err=True)
    for name, why in result.corrupt:
        click.echo(f"qkit report: corrupt result {name}: {why}", err=True)
    for fig in result.figures:
        if not fig.file:
            click.echo(f"qkit report: figure {fig.name} not drawn: {fig.why_not}", err=True)
    click.echo(result.line())


def _bad(message: str) -> None:
    click.echo(f"qkit: error: {message}", err=True)
    raise SystemExit(2)
