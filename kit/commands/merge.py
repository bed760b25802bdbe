"""``qkit merge``: result folders (shards, machines) into one (library: `kit.run.merge`)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from kit.commands.common import BadInput as _BadInput
from kit.documents import write_json
from kit.run.merge import merge_results


@click.command("merge")
@click.argument("sources", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--out",
    "dest",
    type=click.Path(path_type=Path),
    default=None,
    help="Merged result directory (one sub-directory per machine).",
)
@click.option("--strict", is_flag=True, help="Exit 1 on any conflict, corrupt document, or missing shard or cell.")
@click.option(
    "--json",
    "json_out",
    type=click.Path(path_type=Path),
    default=None,
    help="Also write the merge report here (it is always written to <out>/merge.json).",
)
def merge(sources: tuple[Path, ...], dest: Path | None, strict: bool, json_out: Path | None) -> None:
    """Merge result directories (shards, machines) into one, keeping machines apart.

    Identical documents are counted once; different documents for one cell on one machine are
    reported as conflicts (the newest ok one is kept, the others set aside under conflicts/).
    """
    if dest is None:
        raise _BadInput("--out DIR is required")
    report = merge_results(list(sources), dest)  # its MergeInputError is a BadInput: one line, exit 2
    for line in report.lines():
        click.echo(line)
    if json_out:
        write_json(json_out, report.to_dict())
    if strict and not report.clean:
        click.echo("merge: not clean (see above)", err=True)
        sys.exit(1)
