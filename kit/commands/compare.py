"""``qkit compare A B``: what changed between two result sets beyond noise (`kit.compare.runs`).

Exit codes: 0 compared (whatever changed), 1 ``--fail-on-slowdown PCT`` and a cell is significantly
slower by more than PCT, 2 bad input.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from kit.errors import BadInput


@click.command("compare")
@click.argument("a", type=click.Path(path_type=Path))
@click.argument("b", type=click.Path(path_type=Path))
@click.option(
    "--out", "out_dir", type=click.Path(path_type=Path), default=None, help="Write compare.md/.json/.png here."
)
@click.option("--all", "show_all", is_flag=True, help="Print every cell, not only the ones that changed.")
@click.option("--format", "out_format", type=click.Choice(["text", "json", "md"]), default="text", show_default=True)
@click.option(
    "--min-change",
    default=2.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="A latency change under this percent is never called significant (run-to-run noise).",
)
@click.option(
    "--memory-change",
    default=5.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Peak memory moving by more than this percent is reported (one value per cell, no CI).",
)
@click.option(
    "--fail-on-slowdown",
    "fail_pct",
    default=None,
    type=click.FloatRange(min=0),
    help="Exit 1 when any cell is significantly slower by more than PCT percent (for CI).",
)
def compare(
    a: Path,
    b: Path,
    out_dir: Path | None,
    show_all: bool,
    out_format: str,
    min_change: float,
    memory_change: float,
    fail_pct: float | None,
) -> None:
    """Compare two result sets cell by cell: B/A latency with its CI, memory and fidelity."""
    from kit.compare.runs import compare_dirs, draw, markdown, text_lines

    for d in (a, b):
        if not d.is_dir():
            raise BadInput(f"results directory {d} does not exist")
    cmp, corrupt = compare_dirs(a, b, min_change=min_change / 100, memory_change=memory_change / 100)
    for name, why in corrupt:
        click.echo(f"qkit compare: corrupt result {name}: {why}", err=True)
    if not cmp.cells and not cmp.only_a and not cmp.only_b:
        raise BadInput(f"no result documents under {a} or {b}")
    if out_dir is not None:
        from kit.documents import atomic_write_text

        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            draw(cmp, out_dir / "compare.png")
            atomic_write_text(out_dir / "compare.md", markdown(cmp))
            atomic_write_text(out_dir / "compare.json", json.dumps(cmp.to_dict(), indent=1) + "\n")
        except OSError as exc:
            raise BadInput(f"cannot write into {out_dir}: {exc.strerror or exc}") from None
    if out_format == "json":
        click.echo(json.dumps(cmp.to_dict(), indent=1))
    elif out_format == "md":
        click.echo(markdown(cmp), nl=False)
    else:
        for line in text_lines(cmp, show_all=show_all):
            click.echo(line)
        if out_dir is not None:
            click.echo(f"table and figure: {out_dir / 'compare.md'}, {out_dir / 'compare.png'}")
    if fail_pct is not None:
        bad = cmp.slower_beyond(fail_pct)
        if bad:
            click.echo(f"qkit compare: {len(bad)} cell(s) slower by more than {fail_pct:g}%", err=True)
            click.get_current_context().exit(1)
