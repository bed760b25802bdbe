"""A `Diagnosis` as a JSON document (kind ``diagnosis``) and as a compact text table."""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from kit.diagnose.metrics import finite_or_none
from kit.diagnose.records import Diagnosis, LayerError

KIND = "qkit-diagnosis"
_NUMBERS = ("local_sqnr_db", "local_cosine", "accumulated_sqnr_db", "accumulated_cosine", "weight_sqnr_db")


def _layer(layer: LayerError, rank: int) -> dict[str, Any]:
    doc = asdict(layer)
    for key in _NUMBERS:
        doc[key] = finite_or_none(doc[key])
    doc["rank"] = rank
    return doc


def _clean(value: Any) -> Any:
    """JSON-safe: infinities and NaN (exact matches, unmeasured values) become None."""
    if isinstance(value, float):
        return finite_or_none(value)
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def to_document(diagnosis: Diagnosis, figure: str | None = None) -> dict[str, Any]:
    """The diagnosis document: every number with its method (schemas/diagnosis.schema.json)."""
    worst = diagnosis.worst_first()
    keep = asdict(diagnosis.keep_in_float) if diagnosis.keep_in_float else None
    doc = {
        "schema_version": "1",
        "kind": KIND,
        "model": diagnosis.model,
        "path": diagnosis.path,
        "device": diagnosis.device,
        "weights": diagnosis.weights,
        "weights_info": diagnosis.weights_info,
        "fidelity_meaning": diagnosis.fidelity_meaning,
        "inputs": diagnosis.inputs,
        "reference": diagnosis.reference,
        "quantization": diagnosis.quantization,
        "final_output": diagnosis.final,
        "layers_worst_first": [_layer(layer, rank) for rank, layer in enumerate(worst, start=1)],
        "keep_in_float": keep,
        "figure": figure,
        "timings": diagnosis.timings,
        "notes": diagnosis.notes,
    }
    return dict(_clean(doc))


def write_document(target: str | os.PathLike[str], diagnosis: Diagnosis, figure: str | None = None) -> Path:
    from kit.documents import write

    return write(target, to_document(diagnosis, figure), "diagnosis")


def _db(value: float | None) -> str:
    if value is None:
        return "-"
    if value == float("inf"):
        return "exact"
    return f"{value:.1f}"


def text_table(diagnosis: Diagnosis, top: int = 10) -> str:
    """The worst ``top`` layers, then the final output and the keep-in-float result."""
    worst = diagnosis.worst_first()[: max(top, 0)]
    width = max([len("layer")] + [len(layer.name) for layer in worst])
    head = (
        f"{'rank':>4}  {'depth':>5}  {'layer':<{width}}  {'local dB':>8}  {'local cos':>9}  "
        f"{'accum dB':>8}  {'accum cos':>9}  {'weight dB':>9}"
    )
    lines = [
        f"{diagnosis.model} / {diagnosis.path} on {diagnosis.device}: {len(diagnosis.layers)} quantized layers, "
        f"{diagnosis.inputs['images']} images (seed {diagnosis.inputs['seed']}); {diagnosis.fidelity_meaning}",
        f"worst {len(worst)} by local SQNR (the error a layer adds, fed FP32 inputs); accum = the whole quantized "
        "model at that layer",
        head,
    ]
    for rank, layer in enumerate(worst, start=1):
        lines.append(
            f"{rank:>4}  {layer.index:>5}  {layer.name:<{width}}  {_db(layer.local_sqnr_db):>8}  "
            f"{layer.local_cosine:>9.5f}  {_db(layer.accumulated_sqnr_db):>8}  {layer.accumulated_cosine:>9.5f}  "
            f"{_db(layer.weight_sqnr_db):>9}"
        )
    f = diagnosis.final
    top1 = "" if f.get("top1_agreement") is None else f", top-1 agreement {f['top1_agreement']:.3f} (n={f['n']})"
    lines.append(f"final output ({f['output']}): cosine {f['cosine']:.5f}, SQNR {_db(f['sqnr_db'])} dB{top1}")
    keep = diagnosis.keep_in_float
    if keep is not None:
        word = "reached" if keep.reached else "NOT reached"
        shown = keep.layers[: max(top, 1)]
        names = ", ".join(shown) if keep.layers else "(none: the quantized model already reaches it)"
        if len(keep.layers) > len(shown):
            names += f", ... ({len(keep.layers) - len(shown)} more: the worst-first order above, full list in --json)"
        lines.append(
            f"keep in float for cosine >= {keep.target_cosine}: {len(keep.layers)} of {keep.layers_total} "
            f"layers: {names}"
        )
        how = "re-quantized without them" if keep.layers else "the quantized model as is"
        lines.append(
            f"  verified ({how}): cosine {keep.verified_cosine:.5f}, SQNR "
            f"{_db(keep.verified_sqnr_db)} dB: target {word} ({len(keep.steps) - 1} re-quantizations; greedy by "
            "local error, doubling then bisection)"
        )
    return "\n".join(lines)
