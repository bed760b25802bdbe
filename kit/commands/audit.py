"""``qkit audit [--expected DIR] [--json FILE]``: every rule over the claims, every finding reported.

Exit codes: 0 no error-level finding, 1 at least one (about the claims), 2 bad input (one line on
stderr, from the CLI group's `BadInput` handler), 3 the kit itself failed (a rule raised, or the
findings document broke its own schema).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import click

from kit import documents
from kit.claims.audit import (
    Study,
    exit_code,
    findings_document,
    render_table,
    run_rules,
    screen,
    select_rules,
    summary_line,
)
from kit.claims.audit.findings import EXIT_KIT_FAILED
from kit.claims.load import default_expected_dir, load_claims
from kit.errors import BadInput, one_line

SCREEN_LINES = 50


@click.command("audit")
@click.option(
    "--expected",
    "expected_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Directory of claim files [default: the repository's expected/].",
)
@click.option(
    "--json",
    "json_file",
    type=click.Path(path_type=Path),
    default=None,
    help="Also write the findings here (checked by schemas/findings.schema.json).",
)
@click.option("--all", "show_all", is_flag=True, help="Print every finding with its evidence and claims.")
@click.option(
    "--format",
    "out_format",
    type=click.Choice(["text", "json", "md"]),
    default="text",
    show_default=True,
    help="json: the findings document on stdout (every finding); md: the summary as markdown.",
)
def audit(expected_dir: Path | None, json_file: Path | None, show_all: bool, out_format: str) -> None:
    """Check the published claims against each other, the model configs and the GPU's data sheet.

    Prints one line per rule and severity (``--all``: every finding). Exit 0 when no finding is an
    error, 1 when any is, 2 on bad input, 3 when the kit itself failed.
    """
    directory = expected_dir if expected_dir is not None else default_expected_dir()
    try:
        study = Study.from_input(load_claims(directory))  # ClaimsError, AuditInputError: BadInput, exit 2
    except OSError as exc:  # unreadable input
        raise BadInput(f"{directory}: {one_line(exc)}") from None
    rules = select_rules()
    findings = run_rules(study, rules)
    line = summary_line(findings, study, len(rules))
    doc = findings_document(findings, study, str(directory), rules)
    if json_file is not None or out_format == "json":
        problem = documents.problem(doc, "findings")
        if problem is not None:  # our document breaks our schema: the kit failed, not the input
            click.echo(f"qkit audit: internal error: findings document {problem}", err=True)
            raise SystemExit(EXIT_KIT_FAILED)
    if json_file is not None:
        try:
            documents.write(json_file, doc, "findings")
        except OSError as exc:
            raise BadInput(f"cannot write {json_file}: {one_line(exc.strerror or exc)}") from None
    file = None if json_file is None else str(json_file)
    if out_format == "json":
        click.echo(json.dumps(doc, indent=1, ensure_ascii=False))
    elif out_format == "md":
        click.echo(screen.markdown(doc["findings"], summary_line=line, findings_file=file), nl=False)
    elif show_all or len(render_table(findings).splitlines()) <= SCREEN_LINES:
        # --all, or the whole table fits on one screen anyway: every finding with evidence and sources
        click.echo(render_table(findings) if findings else "no findings")
        click.echo(line)
        if json_file is not None:
            click.echo(f"findings: {json_file}")
    else:
        width = max(80, min(200, shutil.get_terminal_size((160, 40)).columns))
        for text in screen.screen(doc["findings"], summary_line=line, findings_file=file, width=width):
            click.echo(text)
    raise SystemExit(exit_code(findings))
