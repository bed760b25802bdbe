"""Check every claim against qkit's result documents: one verdict per claim.

Verdicts:

* ``pass`` / ``fail``: the claim was measured and compared; a fail gives measured, claimed,
  deviation and tolerance.
* ``inconclusive``: the measurement's 95% confidence interval straddles a tolerance edge.
* ``not-comparable``: a hardware-bound claim (absolute time or rate) measured on other hardware
  (or a version/hardware statement that differs from our environment): ours shown, not judged.
* ``not-measured``: a cell is missing, skipped or failed (its reason), or was measured only on
  another device. A CUDA claim is never compared with a CPU measurement unless the claim itself
  says why (``compare_device``, seed 004's CPU-only dynamic quantization).
* ``unsupported``: the claim cannot be a measurement (simulated accuracy, labels, file counts).
* ``error``: the kit itself failed while judging the claim (a bug): the exception in one line.
  Every other claim is still judged, and ``qkit validate`` exits 3.

Several machines. Results merged from several machines (``qkit merge``: one sub-directory per
machine) are kept apart by ``Machine`` (device + GPU name, or CPU model). A claim measured on more
than one machine of its device is judged on each of them by the same rules (a hardware-bound
claim only where the GPU/CPU model is the claimed one; ``not-comparable`` on the others), and a
machine that measured cells on that device but not this claim's is ``not-measured`` there, with
its reason. The verdict then carries ``per_machine`` (one entry per machine) and a one-line
``summary`` ("holds on 2 of 3 GPUs (fails on T4)"), and its overall verdict is:

* ``fail`` if it fails on any machine that could judge it (pass/fail/inconclusive there);
* ``pass`` if it passes on every machine that could judge it;
* ``inconclusive`` otherwise (some inconclusive, none failed);
* only when no machine could judge it: the verdict today's single-machine choice gives
  (``not-comparable`` or ``not-measured``).

The other fields (measured, deviation, reason, hardware, ...) are those of one machine with the
overall verdict: the claimed hardware first, then the machine that measured most. With a single
machine nothing of this applies and the verdict is the single-machine one, field for field.

Modules, each importing only those above it:

    values     Measured / Missing, reading numbers out of documents, formatting them
    stats      tolerance intervals, pass/fail/inconclusive, aggregate statistics
    verdict    the verdict kinds, the Verdict record, building one from a claim
    machines   Machine, machine_of, which machine may judge a claim, the across-machines summary
    index      screening documents against their schemas, ResultIndex, reading accuracy documents
    metrics    what a claim's metric reads from results: extractors, pairs and their CIs, rows
    study      version and hardware statements against our environment
    judge      verdicts for cells, aggregates and rankings, across machines; `judge`, `validate`
    document   the verdict document, its summary counts and exit code
"""

from __future__ import annotations

from kit.claims.validate.document import Summary, summarize, verdict_document, verdicts_problem
from kit.claims.validate.index import (
    ResultIndex,
    Screened,
    load_accuracy_docs,
    result_problem,
    screen_results,
)

# `judge` (the function) is not re-exported: it would hide the `judge` module behind the package attribute.
from kit.claims.validate.judge import across_machines, judge_aggregate, judge_cell, validate
from kit.claims.validate.machines import (
    ANYWHERE,
    Machine,
    claimed_hardware,
    machine_list,
    machine_of,
    machines_summary,
    overall_verdict,
)
from kit.claims.validate.metrics import ACCURACY_METRICS, BASELINE_PATH, PAIRS, SINGLE, Pair, measure
from kit.claims.validate.stats import Z95, allowed_interval, classify
from kit.claims.validate.study import judge_hardware, judge_study, judge_version, version_matches
from kit.claims.validate.values import Measured, Missing, fmt
from kit.claims.validate.verdict import CLASSES, JUDGED, VERDICTS, Verdict
from kit.hardware.gpus import same_hardware_name

__all__ = [
    "ACCURACY_METRICS",
    "ANYWHERE",
    "BASELINE_PATH",
    "CLASSES",
    "JUDGED",
    "PAIRS",
    "SINGLE",
    "VERDICTS",
    "Z95",
    "Machine",
    "Measured",
    "Missing",
    "Pair",
    "ResultIndex",
    "Screened",
    "Summary",
    "Verdict",
    "across_machines",
    "allowed_interval",
    "claimed_hardware",
    "classify",
    "fmt",
    "judge_aggregate",
    "judge_cell",
    "judge_hardware",
    "judge_study",
    "judge_version",
    "load_accuracy_docs",
    "machine_list",
    "machine_of",
    "machines_summary",
    "measure",
    "overall_verdict",
    "result_problem",
    "same_hardware_name",
    "screen_results",
    "summarize",
    "validate",
    "verdict_document",
    "verdicts_problem",
    "version_matches",
]
