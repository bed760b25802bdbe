"""Per-layer errors of a quantized torch model against its FP32 original, through forward hooks.

Two passes over the same input batch:

1. the FP32 model runs with a hook on every layer the quantized model replaced; at each call the
   hook feeds the layer's FP32 input to the quantized counterpart (same name in the quantized
   model) and compares its output with the FP32 output: the **local** error. The FP32 output is
   kept for pass 2.
2. the quantized model runs alone with hooks on the same names; each quantized output is compared
   with the FP32 output kept in pass 1: the **accumulated** error at that depth.

A layer called more than once per forward (weight sharing; none in the study's models) is
measured at its first call. Only the FP32 outputs of the hooked layers are kept (the batch's
activations, float32), never the inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from kit.diagnose.metrics import both
from kit.diagnose.records import LayerError


def _tensor(value: Any) -> Any:
    """The tensor of a layer's output (some wrappers return tuples)."""
    return value[0] if isinstance(value, (tuple, list)) else value


def capture(
    float_model: Any,
    qmodel: Any,
    layer_names: Sequence[str],
    run_output: Callable[[Any, Any], Any],
    pixels: np.ndarray,
    weight_sqnr: Mapping[str, float | None] | None = None,
) -> tuple[list[LayerError], np.ndarray, np.ndarray]:
    """(layer errors in execution order, FP32 final output, quantized final output).

    ``run_output(model, x)`` returns the model's primary output tensor (`kit.models.build.output_of`).
    ``weight_sqnr``: the weight SQNR by layer name where the method exposes it, computed before any
    forward (bitsandbytes repacks CPU 4-bit weights at the first one).
    """
    import torch

    float_modules = dict(float_model.named_modules())
    q_modules = dict(qmodel.named_modules())
    missing = [n for n in layer_names if n not in float_modules or n not in q_modules]
    if missing:
        raise ValueError(f"layers missing from one of the models: {', '.join(missing[:5])}")
    x = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32))
    order: list[str] = []
    kept: dict[str, Any] = {}
    local: dict[str, tuple[float, float]] = {}
    kinds = {n: type(q_modules[n]).__name__ for n in layer_names}

    def fp32_hook(name: str) -> Callable[..., None]:
        def hook(module: Any, args: tuple[Any, ...], output: Any) -> None:
            if name in kept:
                return
            out = _tensor(output).detach().float()
            quantized = _tensor(q_modules[name](*args)).detach().float()
            local[name] = both(out.numpy(), quantized.numpy())
            kept[name] = out.clone()
            order.append(name)

        return hook

    accumulated: dict[str, tuple[float, float]] = {}

    def q_hook(name: str) -> Callable[..., None]:
        def hook(module: Any, args: tuple[Any, ...], output: Any) -> None:
            if name in accumulated or name not in kept:
                return
            accumulated[name] = both(kept[name].numpy(), _tensor(output).detach().float().numpy())

        return hook

    handles = [float_modules[n].register_forward_hook(fp32_hook(n)) for n in layer_names]
    try:
        with torch.inference_mode():
            reference = run_output(float_model, x).float().numpy()
    finally:
        for h in handles:
            h.remove()
    handles = [q_modules[n].register_forward_hook(q_hook(n)) for n in layer_names]
    try:
        with torch.inference_mode():
            quantized = run_output(qmodel, x).float().numpy()
    finally:
        for h in handles:
            h.remove()
    layers = []
    for index, name in enumerate(order):
        l_sqnr, l_cos = local[name]
        a_sqnr, a_cos = accumulated.get(name, (float("nan"), float("nan")))
        w = (weight_sqnr or {}).get(name)
        layers.append(
            LayerError(
                index=index,
                name=name,
                kind=kinds[name],
                local_sqnr_db=l_sqnr,
                local_cosine=l_cos,
                accumulated_sqnr_db=a_sqnr,
                accumulated_cosine=a_cos,
                weight_sqnr_db=w,
                output_shape=list(kept[name].shape),
            )
        )
        del kept[name]
    return layers, reference, quantized
