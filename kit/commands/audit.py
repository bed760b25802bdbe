"""``qkit audit [--expected DIR] [--json FILE]``: every rule over the claims, every finding reported.

Exit codes: 0 no error-level finding, 1 at least one (about the claims), 2 bad input (one line on
stderr, from the CLI group's `BadInput` handler), 3 the kit itself failed (a rule raised, or the
findings document broke its own schema).
"""

from __future__ import annotations

from pathlib import Path

import click

from kit import documents
from kit.claims.audit import (
    Study,
    exit_code,
    findings_document,
    render_table,
    run_rules,
    select_rules,
    summary_line,
)
from kit.claims.audit.findings import EXIT_KIT_FAILED
from kit.claims.load import default_expected_dir, load_claims
from kit.errors import BadInput, one_line


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
def audit(expected_dir: Path | None, json_file: Path | None) -> None:
    """Check the published claims against each other, the model configs and the GPU's data sheet.

    Exit 0 when no finding is an error, 1 when any is, 2 on bad input, 3 when the kit itself failed.
    """
    directory = expected_dir if expected_dir is not None else default_expected_dir()
    try:
        study = Study.from_input(load_claims(directory))  # ClaimsError, AuditInputError: BadInput, exit 2
    except OSError as exc:  # unreadable input
        raise BadInput(f"{directory}: {one_line(exc)}") from None
    rules = select_rules()
    findings = run_rules(study, rules)
    click.echo(render_table(findings) if findings else "no findings")
    click.echo(summary_line(findings, study, len(rules)))
    if json_file is not None:
        doc = findings_document(findings, study, str(directory), rules)
        problem = documents.problem(doc, "findings")
        if problem is not None:  # our document breaks our schema: the kit failed, not the input
            click.echo(f"qkit audit: internal error: findings document {problem}", err=True)
            raise SystemExit(EXIT_KIT_FAILED)
        try:
            documents.write(json_file, doc, "findings")
        except OSError as exc:
            raise BadInput(f"cannot write {json_file}: {one_line(exc.strerror or exc)}") from None
        click.echo(f"findings: {json_file}")
    raise SystemExit(exit_code(findings))
