"""What a bitsandbytes-loaded model proves about itself: which Linear layers were replaced, by which
method, and the bytes its weights take by dtype; and the checks a cell fails on (no replacement,
a layer of the other method, weights not smaller than the float model's)."""

from __future__ import annotations

from typing import Any

from kit.measure.memory import weight_bytes_by_dtype
from kit.paths.base import PathFailed

# Largest (quantized codes + scales) / FP32 bytes of the replaced Linear weights (see docstring).
LAYER_RATIO_LIMIT: dict[str, float] = {"int8": 0.30, "nf4": 0.17, "fp4": 0.17}
_MAX_NAMES = 24  # module names listed in a result before "... and N more"


def head_modules(model: Any) -> list[str]:
    """Names of the Linear layers outside the base model (the task heads); [] for a base model."""
    import torch

    prefix = getattr(model, "base_model_prefix", "") or ""
    base = getattr(model, prefix, None) if prefix else None
    if not isinstance(base, torch.nn.Module) or base is model:
        return []
    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and name and not name.startswith(prefix + ".")
    ]


def linear_shapes(model: Any) -> dict[str, tuple[int, int]]:
    """(out_features, in_features) of every nn.Linear, by module name."""
    import torch

    return {
        name: (int(m.out_features), int(m.in_features))
        for name, m in model.named_modules()
        if isinstance(m, torch.nn.Linear)
    }


def listed_names(names: list[str]) -> list[str]:
    """Sorted names, cut to the first few with "... and N more" (a result lists, it does not dump)."""
    names = sorted(names)
    if len(names) <= _MAX_NAMES:
        return names
    return [*names[:_MAX_NAMES], f"... and {len(names) - _MAX_NAMES} more"]


# --------------------------------------------------------------------------------- inspection


def _tensor_key(t: Any) -> tuple[int, int, str]:
    return (t.data_ptr(), t.numel(), str(t.dtype))


def _add(by_dtype: dict[str, int], t: Any) -> int:
    size = int(t.numel() * t.element_size())
    key = str(t.dtype).replace("torch.", "")
    by_dtype[key] = by_dtype.get(key, 0) + size
    return size


def _quant_state_tensors(qs: Any) -> tuple[list[Any], list[Any]]:
    """(scale tensors, code tables) a bitsandbytes 4-bit QuantState holds."""
    import torch

    scales: list[Any] = []
    codes: list[Any] = []
    if qs is None:
        return scales, codes
    if isinstance(getattr(qs, "absmax", None), torch.Tensor):
        scales.append(qs.absmax)
    if isinstance(getattr(qs, "code", None), torch.Tensor):
        codes.append(qs.code)
    if isinstance(getattr(qs, "offset", None), torch.Tensor):
        scales.append(qs.offset)
    state2 = getattr(qs, "state2", None)
    if state2 is not None:
        if isinstance(getattr(state2, "absmax", None), torch.Tensor):
            scales.append(state2.absmax)
        if isinstance(getattr(state2, "code", None), torch.Tensor):
            codes.append(state2.code)
    return scales, codes


def inspect_bnb_model(model: Any, bnb: Any) -> dict[str, Any]:
    """What the loaded model really holds: replaced vs float Linears, bytes by dtype and by role."""
    import torch

    l8 = bnb.nn.Linear8bitLt
    l4 = bnb.nn.Linear4bit
    seen = {_tensor_key(t) for t in [*model.parameters(), *model.buffers()]}
    by_dtype = weight_bytes_by_dtype(model)  # parameters + buffers (int8 / packed uint8 weights too)
    replaced: dict[str, list[str]] = {"int8": [], "4bit": []}
    not_quantized: list[str] = []
    float_left: list[str] = []
    classes: dict[str, int] = {}
    quant_types: set[str] = set()
    blocksizes: set[int] = set()
    nested: set[bool] = set()
    thresholds: set[float] = set()
    compute_dtypes: set[str] = set()
    code_bytes = scale_bytes = q_weight_bytes = fp32_bytes = 0
    for name, m in model.named_modules():
        if isinstance(m, (l8, l4)):
            classes[type(m).__name__] = classes.get(type(m).__name__, 0) + 1
            w = m.weight
            out_f, in_f = int(m.out_features), int(m.in_features)
            if isinstance(m, l8):
                ok = w.dtype == torch.int8
                scb = getattr(w, "SCB", None)
                if scb is None:
                    scb = getattr(getattr(m, "state", None), "SCB", None)
                extra_scales = [scb] if isinstance(scb, torch.Tensor) else []
                extra_codes: list[Any] = []
                thr = getattr(getattr(m, "state", None), "threshold", None)
                if thr is not None:
                    thresholds.add(float(thr))
                (replaced["int8"] if ok else not_quantized).append(name)
            else:
                qs = getattr(w, "quant_state", None) or getattr(m, "quant_state", None)
                ok = qs is not None and not w.is_floating_point()
                extra_scales, extra_codes = _quant_state_tensors(qs)
                if qs is not None:
                    quant_types.add(str(getattr(qs, "quant_type", "?")))
                    if getattr(qs, "blocksize", None) is not None:
                        blocksizes.add(int(qs.blocksize))
                    nested.add(bool(getattr(qs, "nested", False)))
                cd = getattr(m, "compute_dtype", None)
                if cd is not None:
                    compute_dtypes.add(str(cd).replace("torch.", ""))
                (replaced["4bit"] if ok else not_quantized).append(name)
            if not ok:
                continue
            q_weight_bytes += int(w.numel() * w.element_size())
            fp32_bytes += out_f * in_f * 4
            for t in extra_scales:
                if _tensor_key(t) not in seen:
                    seen.add(_tensor_key(t))
                    _add(by_dtype, t)
                scale_bytes += int(t.numel() * t.element_size())
            for t in extra_codes:
                if _tensor_key(t) not in seen:
                    seen.add(_tensor_key(t))
                    _add(by_dtype, t)
                code_bytes += int(t.numel() * t.element_size())
        elif isinstance(m, torch.nn.Linear):
            float_left.append(name)
    n_replaced = len(replaced["int8"]) + len(replaced["4bit"])
    quantized_bytes = q_weight_bytes + scale_bytes
    return {
        "replaced_linear_layers": n_replaced,
        "replaced_int8_layers": len(replaced["int8"]),
        "replaced_4bit_layers": len(replaced["4bit"]),
        "replaced_by_class": classes,
        "not_quantized_layers": len(not_quantized),
        "replaced_but_not_quantized": listed_names(not_quantized),
        "float_linear_layers_left": len(float_left),
        "float_linear_modules": listed_names(float_left),
        "quant_types": sorted(quant_types),
        "blocksizes": sorted(blocksizes),
        "double_quant_in_layers": sorted(nested),
        "int8_thresholds_in_layers": sorted(thresholds),
        "compute_dtypes_in_layers": sorted(compute_dtypes),
        "replaced_weight_bytes": {
            "quantized_codes": q_weight_bytes,
            "scales": scale_bytes,
            "code_tables": code_bytes,
            "fp32_equivalent": fp32_bytes,
            "ratio_vs_fp32": (quantized_bytes / fp32_bytes) if fp32_bytes else None,
            "method": (
                "replaced Linear weights only (biases stay float): quantized codes + scales "
                "(int8 SCB per row; 4-bit absmax per block, nested absmax + offset) over "
                "out_features*in_features*4; code tables (NF4/FP4 16-entry map, 256-entry nested "
                "map: format constants) are counted in weight_bytes_by_dtype, not in the ratio"
            ),
        },
        "weight_bytes_by_dtype": by_dtype,
        "weight_bytes": int(sum(by_dtype.values())),
    }


def verify_bnb_model(path_name: str, method: str, info: dict[str, Any], float_model_bytes: int) -> None:
    """Raise PathFailed with the reason when the loaded model shows the method did not run."""
    total = info["replaced_linear_layers"] + info["float_linear_layers_left"] + info["not_quantized_layers"]
    expected, other = ("int8", "4bit") if method == "int8" else ("4bit", "int8")
    label = "8-bit (Linear8bitLt)" if method == "int8" else "4-bit (Linear4bit)"
    if info["replaced_but_not_quantized"]:
        raise PathFailed(
            f"{path_name}: bitsandbytes layers whose weight is not quantized: "
            f"{', '.join(info['replaced_but_not_quantized'][:5])}"
        )
    if info[f"replaced_{expected}_layers"] == 0:
        raise PathFailed(
            f"{path_name}: 0 of {total} Linear layers were replaced by bitsandbytes {label} layers "
            f"({info['float_linear_layers_left']} left in float): the method did not run"
        )
    if info[f"replaced_{other}_layers"]:
        raise PathFailed(
            f"{path_name}: the model holds {info[f'replaced_{other}_layers']} layers of the other "
            f"bitsandbytes method ({info['replaced_by_class']}); a {method} path must hold only {label}"
        )
    if method != "int8" and info["quant_types"] != [method]:
        raise PathFailed(f"{path_name}: 4-bit layers use quant_type {info['quant_types']}, expected ['{method}']")
    ratio = info["replaced_weight_bytes"]["ratio_vs_fp32"]
    limit = LAYER_RATIO_LIMIT[method]
    if ratio is None or ratio > limit:
        raise PathFailed(
            f"{path_name}: replaced Linear weights take {ratio:.3f}x their FP32 bytes, above the "
            f"{limit}x a {method} layer can take: not {method}"
        )
    if info["weight_bytes"] >= float_model_bytes:
        raise PathFailed(
            f"{path_name}: weight bytes {info['weight_bytes']} are not below the FP32 model's {float_model_bytes}"
        )
