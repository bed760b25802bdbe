"""``qkit audit [--expected DIR] [--json FILE]``: every rule over the claims, every finding reported.

Exit codes: 0 no error-level finding, 1 at least one, 2 bad input (one line on stderr).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tempfile
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from kit.claims.audit.engine import (
    SEVERITIES,
    AuditInputError,
    Finding,
    Study,
    counts,
    load_rules,
    run_rules,
)

FINDINGS_SCHEMA = "findings.schema.json"


def _schemas_dir() -> Path:
    from kit.documents import schemas_dir

    return schemas_dir()


def findings_document(findings: Sequence[Finding], study: Study, expected_dir: str) -> dict[str, Any]:
    """The JSON document ``--json`` writes (``schemas/findings.schema.json``)."""
    rules = load_rules()
    c = counts(findings)
    return {
        "schema_version": "1",
        "kind": "qkit-findings",
        "generated_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "expected_dir": expected_dir,
        "claim_count": len(study.claims),
        "files": sorted(study.files),
        "summary": {**c, "total": len(findings), "rules_run": len(rules), "exit_code": 1 if c["error"] else 0},
        "rules": [rules[k].to_dict() for k in sorted(rules)],
        "findings": [f.to_dict() for f in findings],
    }


def validate_document(doc: dict[str, Any]) -> str | None:
    """First schema problem of a findings document, or None."""
    import jsonschema

    schema = json.loads((_schemas_dir() / FINDINGS_SCHEMA).read_text(encoding="utf-8"))
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(doc))
    if error is None:
        return None
    where = "#" + "".join(f"/{p}" for p in error.absolute_path)
    return f"at {where}: {error.message[:200]}"


def write_json_atomic(path: Path, doc: dict[str, Any]) -> None:
    """Write next to the target, then rename: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=2, ensure_ascii=False)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def render_table(findings: Sequence[Finding], width: int | None = None) -> str:
    """Findings as a table: severity, rule, what is wrong; then evidence and claims (with sources)."""
    width = width or max(80, min(160, shutil.get_terminal_size((120, 20)).columns))
    rule_w = max([len("RULE"), *(len(f.rule) for f in findings)])
    head = f"{'SEVERITY':<8}  {'RULE':<{rule_w}}  WHAT IS WRONG"
    indent = " " * (8 + 2 + rule_w + 2)
    body_w = max(40, width - len(indent))
    lines = [head, "-" * min(width, len(head) + 40)]
    for f in findings:
        msg = textwrap.wrap(f.message, body_w, break_on_hyphens=False) or [""]
        lines.append(f"{f.severity:<8}  {f.rule:<{rule_w}}  {msg[0]}")
        lines += [indent + m for m in msg[1:]]
        for label, text in (("evidence", f.evidence), ("claims", _claims_text(f))):
            wrapped = textwrap.wrap(f"{label}: {text}", body_w, subsequent_indent="  ", break_on_hyphens=False) or []
            lines += [indent + w for w in wrapped[:6]]
            if len(wrapped) > 6:
                lines.append(indent + "  ... (see --json)")
    return "\n".join(lines)


def _claims_text(f: Finding) -> str:
    if not f.claims:
        return "none"
    parts = [f"{c.id} [{c.source_file} / {c.section}]" for c in f.claims[:4]]
    more = len(f.claims) - 4
    return "; ".join(parts) + (f"; +{more} more" if more > 0 else "")


def summary_line(findings: Sequence[Finding], study: Study, rules_run: int) -> str:
    c = counts(findings)
    by = ", ".join(f"{c[s]} {s}" for s in SEVERITIES)
    return (
        f"audit: {len(findings)} findings ({by}) from {rules_run} rules over {len(study.claims)} claims "
        f"in {len(study.files)} files"
    )


def _bad(message: str) -> None:
    click.echo(f"qkit audit: error: {' '.join(str(message).split())[:300]}", err=True)
    raise SystemExit(2)


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

    Exit 0 when no finding is an error, 1 when any is, 2 on bad input.
    """
    from kit.claims.load import ClaimsError, default_expected_dir, load_claims

    directory = expected_dir if expected_dir is not None else default_expected_dir()
    try:
        claim_set = load_claims(directory)
        study = Study.from_input(claim_set)
    except (ClaimsError, AuditInputError) as exc:
        _bad(str(exc))
    except (OSError, ValueError, TypeError, RecursionError) as exc:  # unreadable or unusable input
        _bad(f"{directory}: {type(exc).__name__}: {exc}")
    rules = load_rules()
    findings = run_rules(study, [rules[k] for k in sorted(rules)])
    click.echo(render_table(findings) if findings else "no findings")
    click.echo(summary_line(findings, study, len(rules)))
    if json_file is not None:
        doc = findings_document(findings, study, str(directory))
        problem = validate_document(doc)
        if problem is not None:  # a bug of ours, but never a traceback
            _bad(f"findings document does not match {FINDINGS_SCHEMA}: {problem}")
        try:
            write_json_atomic(json_file, doc)
        except OSError as exc:
            _bad(f"cannot write {json_file}: {exc.strerror or exc}")
        click.echo(f"findings: {json_file}")
    raise SystemExit(1 if counts(findings)["error"] else 0)
