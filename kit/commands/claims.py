"""Click commands for the ``qkit`` group: ``claims``, ``validate``, ``accuracy``.

Exit codes: 0 no claim failed, 1 a claim failed (validate) or a path's accuracy run failed,
2 bad input (one line on stderr), 3 the kit itself failed while judging a claim (validate: a
verdict ``error``) or built a verdict or accuracy document that breaks its schema.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click

from kit import documents
from kit.claims.load import ClaimsError, ClaimSet, default_expected_dir, load_claims
from kit.claims.validate import (
    CLASSES,
    VERDICTS,
    fmt,
    load_accuracy_docs,
    machine_list,
    screen,
    screen_results,
    summarize,
    verdict_document,
)
from kit.claims.validate import validate as run_validation
from kit.claims.validate.document import EXIT_ERROR
from kit.errors import BadInput

DEFAULT_RESULTS = Path("results") / "latest"
DEFAULT_ACCURACY_PATHS = ("torch-fp32", "torch-int8-dynamic")


class KitFailure(click.ClickException):
    """The kit itself failed (a bug of ours, not bad input): exit 3, never a quiet pass."""

    exit_code = EXIT_ERROR


def _claims_or_exit(expected: Path | None) -> ClaimSet:
    try:
        return load_claims(expected if expected is not None else default_expected_dir())
    except ClaimsError as exc:
        raise BadInput(str(exc)) from None


def _results_dir(results: Path | None) -> Path:
    directory = results if results is not None else Path(os.environ.get("QKIT_RESULTS", DEFAULT_RESULTS))
    if not directory.is_dir():
        raise BadInput(f"results directory {directory} does not exist (run `qkit reproduce` or pass --results DIR)")
    return directory


# ================================================================================ claims


def _count_table(claims: ClaimSet) -> list[str]:
    cols = ("portable", "relative", "hardware-bound", "unsupported", "total")
    lines = [f"{'file':<30}" + "".join(f"{c:>16}" for c in cols)]
    total: Counter[str] = Counter()
    for name, counts in claims.counts().items():
        total.update(counts)
        lines.append(f"{name:<30}" + "".join(f"{counts.get(c, 0):>16}" for c in cols))
    lines.append(f"{'all':<30}" + "".join(f"{total.get(c, 0):>16}" for c in cols))
    return lines


def _claim_line(claim: Any) -> str:
    where = " ".join(x for x in (claim.kit_path, claim.measure_device) if x)
    value = json.dumps(claim.value, ensure_ascii=False)
    flag = "" if claim.supported else "  [unsupported]"
    return f"  {claim.id:<62} {claim.comparability:<15} {claim.metric:<26} {value} {claim.unit} {where}{flag}"


@click.group("claims", invoke_without_command=True)
@click.option(
    "--expected",
    type=click.Path(path_type=Path),
    default=None,
    help="Claims directory (default: the repository's expected/, or $QKIT_EXPECTED).",
)
@click.option("--counts", "counts_only", is_flag=True, help="Only the counts per file and class.")
@click.pass_context
def claims(ctx: click.Context, expected: Path | None, counts_only: bool) -> None:
    """List the published claims (expected/) with counts per seed file and comparability class.

    `qkit claims import TABLE` turns a CSV or YAML table of claims into a claims file."""
    if ctx.invoked_subcommand is not None:
        return
    claim_set = _claims_or_exit(expected)
    if not counts_only:
        for f in claim_set.files:
            click.echo(f"{f.source_file}: {f.title} ({len(f.claims)} claims)")
            for claim in f.claims:
                click.echo(_claim_line(claim))
    click.echo(f"expected: {claim_set.directory} ({len(claim_set.files)} files, {len(claim_set)} claims)")
    for line in _count_table(claim_set):
        click.echo(line)


@claims.command("import")
@click.argument("table", type=click.Path(path_type=Path))
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=Path("."),
    show_default=True,
    help="Folder the claims file is written to (NNN_<hash of source>.json).",
)
@click.option("--number", type=int, default=None, help="The file's 3-digit number (every id starts with it).")
@click.option("--title", default=None, help="The source's title.")
@click.option("--source", default=None, help="Where the claims are published (URL, citation).")
@click.option("--gpu", default=None, help="The GPU the source measured on, if it names one.")
@click.option("--cpu", default=None, help="The CPU the source measured on, if it names one.")
@click.option("--check", "check_only", is_flag=True, help="Check the table only; write nothing.")
def claims_import(
    table: Path,
    out_dir: Path,
    number: int | None,
    title: str | None,
    source: str | None,
    gpu: str | None,
    cpu: str | None,
    check_only: bool,
) -> None:
    """Turn a CSV or YAML claims table into a claims file (schema-checked; a bad row is one line
    naming its line number, exit 2). Columns: see docs/claims-format.md, "Writing claims"."""
    from kit.claims.authoring import import_table

    hardware = {k: v for k, v in (("gpu", gpu), ("cpu", cpu)) if v is not None} or None
    stem, doc = import_table(table, number=number, title=title, source=source, hardware=hardware)
    if check_only:
        click.echo(f"{table}: {len(doc['claims'])} claims, valid ({stem}.json)")
        return
    target = out_dir / f"{stem}.json"
    documents.write(target, doc, "claims")
    click.echo(f"{table}: {len(doc['claims'])} claims -> {target}")


# ============================================================================== validate


def _load_documents(results_dir: Path) -> tuple[list[dict], list[str], list[tuple[str, str]]]:
    """Result and accuracy documents under ``results_dir`` with their file names, and unreadable files."""
    from kit.results.store import load_results

    loaded = load_results(results_dir)
    acc_docs, acc_names, acc_bad = load_accuracy_docs(results_dir)
    names = [str(f) for f in loaded.files] + acc_names
    return loaded.docs + acc_docs, names, list(loaded.corrupt) + acc_bad


def _verdict_row(v: Any) -> str:
    reason = v.reason if v.verdict in ("fail", "inconclusive", "not-comparable", "error") else v.reason[:220]
    if getattr(v, "summary", None):  # judged on several machines: where it holds first, then one machine's numbers
        reason = f"[{v.summary}] {reason}"
    measured = fmt(v.measured) if v.measured is not None else "-"
    return f"  {v.verdict:<15} {v.claim_id:<62} claimed {fmt(v.claimed):>12}  measured {measured:>12}  {reason}"


def _print_table(verdicts: list[Any], only: tuple[str, ...]) -> None:
    for cls in CLASSES:
        group = [v for v in verdicts if v.comparability == cls]
        counts = Counter(v.verdict for v in group)
        click.echo(f"== {cls}: {len(group)} claims (" + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) + ")")
        for v in group:
            if not only or v.verdict in only:
                click.echo(_verdict_row(v))


def _machines_line(machines: list[dict[str, Any]]) -> str:
    listed = ", ".join(f"{m['machine']} {m['ok']}/{m['documents']}" for m in machines)
    return (
        f"machines: {len(machines)} (ok/all documents: {listed}); claims measured on several are judged on each, "
        "overall: fail if any fails, pass if all that could judge it pass"
    )


def _write_verdicts(path: Path, doc: dict[str, Any]) -> None:
    try:
        documents.write(path, doc, "verdicts")
    except documents.DocumentError as exc:  # a bug of ours, not bad input: say so and write no file that lies
        raise KitFailure(f"internal error: {exc.problem}") from None
    except ValueError as exc:  # a NaN or Infinity got past `verdict_document`
        raise KitFailure(f"internal error: the verdict document is not standard JSON: {exc}") from None
    except OSError as exc:
        raise BadInput(f"cannot write {path}: {exc.strerror or exc}") from None


@click.command("validate")
@click.option(
    "--results",
    type=click.Path(path_type=Path),
    default=None,
    help="Results directory, searched recursively (default: results/latest, or $QKIT_RESULTS).",
)
@click.option(
    "--expected",
    type=click.Path(path_type=Path),
    default=None,
    help="Claims directory (default: the repository's expected/, or $QKIT_EXPECTED).",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Also write every verdict to this JSON file (schemas/verdicts.schema.json).",
)
@click.option("--all", "show_all", is_flag=True, help="Print every verdict, not the one-screen summary.")
@click.option(
    "--only",
    multiple=True,
    type=click.Choice(VERDICTS),
    help="Print every claim with these verdicts (implies --all; the JSON file always has all).",
)
@click.option(
    "--format",
    "out_format",
    type=click.Choice(["text", "json", "md"]),
    default="text",
    show_default=True,
    help="json: the verdict document on stdout (every verdict); md: the summary as markdown.",
)
def validate(
    results: Path | None,
    expected: Path | None,
    json_path: Path | None,
    show_all: bool,
    only: tuple[str, ...],
    out_format: str,
) -> None:
    """Check every published claim against the results: one verdict per claim; exit 1 if any failed,
    3 if the kit failed while judging one (verdict ``error``).

    Prints one screen (counts, each fail and inconclusive, what would judge the rest); ``--all``
    prints every verdict."""
    claim_set = _claims_or_exit(expected)
    results_dir = _results_dir(results)
    docs, names, unreadable = _load_documents(results_dir)
    screened = screen_results(docs, names)
    rejected = unreadable + screened.rejected
    text = out_format == "text"
    for name, why in rejected:
        click.echo(f"rejected result document {name}: {why}", err=not text)
    verdicts = run_validation(claim_set, screened.results, accuracy=screened.accuracy)
    summary = summarize(verdicts, rejected=len(rejected))
    head = (
        f"claims: {claim_set.directory}  results: {results_dir} ({len(screened.results)} result, "
        f"{len(screened.accuracy)} accuracy documents)"
    )
    machines = machine_list(screened.results)
    for v in verdicts:
        if v.verdict == "error":  # loud: on stderr too, whatever the format hides
            click.echo(f"qkit: {v.reason}", err=True)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    doc = verdict_document(
        verdicts,
        summary,
        expected_dir=str(claim_set.directory),
        results_dir=str(results_dir),
        rejected=rejected,
        generated_utc=stamp,
        documents=len(docs) + len(unreadable),
        machines=machines,
    )
    if json_path is not None:
        _write_verdicts(json_path, doc)
    dicts = [v.to_dict() for v in verdicts]
    if out_format == "json":
        click.echo(json.dumps(doc, indent=1, ensure_ascii=False))
    elif out_format == "md":
        click.echo(screen.markdown(dicts, summary_line=summary.line(), verdict_file=_str(json_path)), nl=False)
    elif show_all or only:
        click.echo(head)
        if len(machines) > 1:
            click.echo(_machines_line(machines))
        _print_table(verdicts, only)
        click.echo(summary.line())
        if json_path is not None:
            click.echo(f"verdicts: {json_path}")
    else:
        lines = [head] + ([_machines_line(machines)] if len(machines) > 1 else [])
        width = max(80, min(200, shutil.get_terminal_size((160, 40)).columns))
        for line in screen.screen(
            dicts, summary_line=summary.line(), verdict_file=_str(json_path), head=lines, width=width
        ):
            click.echo(line)
    click.get_current_context().exit(summary.exit_code)


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path)


# ============================================================================== accuracy


def _accuracy_out(out: Path | None) -> Path:
    if out is not None:
        return out
    if DEFAULT_RESULTS.is_dir():
        return DEFAULT_RESULTS / "accuracy"
    # Creating results/latest here would shadow the symlink the runner makes: ask instead.
    raise BadInput(f"{DEFAULT_RESULTS} does not exist; pass --out DIR (validate reads *.accuracy.json under --results)")


def _accuracy_line(doc: dict[str, Any], file: Path) -> str:
    head = f"{doc['model']} {doc['path']} {doc['device']}"
    if doc["status"] != "ok":
        return f"{head}: {doc['status']} ({doc['reason']}) -> {file}"
    lo1, hi1 = doc["top1_ci95"]
    return (
        f"{head}: top-1 {doc['top1_pct']:.2f}% [95% CI {lo1:.2f}-{hi1:.2f}] top-5 {doc['top5_pct']:.2f}% "
        f"over {doc['images']} images -> {file}"
    )


def _write_accuracy(out_dir: Path, doc: dict[str, Any]) -> Path:
    from kit.claims.accuracy import write_accuracy

    try:
        return write_accuracy(out_dir, doc)
    except documents.DocumentError as exc:  # we built it: a bug of ours, not bad input
        raise KitFailure(f"internal error: {exc.problem}") from None
    except OSError as exc:
        raise BadInput(f"cannot write into {out_dir}: {exc.strerror or exc}") from None


@click.command("accuracy")
@click.option("--model", required=True, help="Study model id, e.g. dinov2-base-2023.")
@click.option(
    "--weights",
    required=True,
    type=click.Path(path_type=Path),
    help="Local checkpoint directory (config.json with id2label, safetensors).",
)
@click.option(
    "--dataset",
    required=True,
    type=click.Path(path_type=Path),
    help="Labelled images in ImageFolder layout: DIR/<class>/<image>.",
)
@click.option(
    "--paths",
    "paths_opt",
    multiple=True,
    help="Paths to evaluate, comma separated or repeated (default: torch-fp32, torch-int8-dynamic).",
)
@click.option("--device", default="cpu", show_default=True, type=click.Choice(["cpu", "cuda"]))
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=1))
@click.option("--limit", default=None, type=click.IntRange(min=1), help="Evaluate only the first N images.")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Where the accuracy documents go (default: results/latest/accuracy).",
)
def accuracy(
    model: str,
    weights: Path,
    dataset: Path,
    paths_opt: tuple[str, ...],
    device: str,
    batch_size: int,
    limit: int | None,
    out: Path | None,
) -> None:
    """Top-1/top-5 accuracy per path on a labelled image folder (for seed 004's accuracy claims)."""
    from kit.claims.accuracy import AccuracyError, run_accuracy

    paths = [p for value in (paths_opt or DEFAULT_ACCURACY_PATHS) for p in value.replace(",", " ").split()]
    if not weights.is_dir():
        raise BadInput(f"--weights {weights}: not a directory")
    out_dir = _accuracy_out(out)
    try:
        docs = run_accuracy(model, weights, dataset, paths, device, batch_size, limit)
    except AccuracyError as exc:
        raise BadInput(str(exc)) from None
    for doc in docs:
        click.echo(_accuracy_line(doc, _write_accuracy(out_dir, doc)))
    click.get_current_context().exit(1 if any(d["status"] == "failed" for d in docs) else 0)
