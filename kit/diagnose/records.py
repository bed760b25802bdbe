"""What a diagnosis holds: one `LayerError` per quantized layer, the keep-in-float search, the whole."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass
class LayerError:
    """One quantized layer. ``index``: its place in execution order (0 = first run).

    ``local_*``: the quantized layer fed the FP32 model's input to it, against the FP32 layer's
    output (the error this layer adds). ``accumulated_*``: the whole quantized model's output of
    this layer against the FP32 model's (every error upstream included). ``weight_sqnr_db``: the
    dequantized weight against the FP32 weight, where the method exposes it (else None).
    """

    index: int
    name: str
    kind: str
    local_sqnr_db: float
    local_cosine: float
    accumulated_sqnr_db: float
    accumulated_cosine: float
    node: str | None = None
    weight_sqnr_db: float | None = None
    output_shape: list[int] = field(default_factory=list)

    @property
    def sort_key(self) -> tuple[float, float, int]:
        """Worst first: lowest local SQNR, then lowest local cosine, then depth."""
        sqnr = self.local_sqnr_db if not math.isnan(self.local_sqnr_db) else -math.inf
        return (sqnr, self.local_cosine, self.index)


@dataclass
class Step:
    """One measured candidate of the keep-in-float search: the first ``kept`` layers of the
    worst-first order left in float, the model quantized again, its final output measured."""

    kept: int
    cosine: float
    sqnr_db: float
    seconds: float


@dataclass
class KeepInFloat:
    target_cosine: float
    method: str
    layers: list[str]
    verified_cosine: float
    verified_sqnr_db: float
    reached: bool
    steps: list[Step]
    layers_total: int
    # ONNX node names of ``layers`` (what ORT's nodes_to_exclude takes); empty for torch models.
    nodes: list[str] = field(default_factory=list)


@dataclass
class Diagnosis:
    model: str
    path: str
    device: str
    weights: str
    weights_info: dict[str, Any]
    fidelity_meaning: str
    inputs: dict[str, Any]
    reference: str
    quantization: dict[str, Any]
    final: dict[str, Any]
    layers: list[LayerError]
    keep_in_float: KeepInFloat | None
    timings: dict[str, float]
    notes: list[str] = field(default_factory=list)

    def worst_first(self) -> list[LayerError]:
        return sorted(self.layers, key=lambda layer: layer.sort_key)

    def by_depth(self) -> list[LayerError]:
        return sorted(self.layers, key=lambda layer: layer.index)
