"""The torch-side methods, each able to quantize the model again with named layers left in float.

* ``torch-int8-dynamic``: ``torch.ao.quantization.quantize_dynamic`` exactly as the path
  (kit/paths/torch_paths.py: ``{nn.Linear}``, qint8); leaving layers in float passes the set of
  the other Linears' names as the qconfig spec instead of the type.
* ``bnb-int8`` / ``bnb-nf4`` / ``bnb-fp4``: the path's own settings and ``BitsAndBytesConfig``
  (`BnbPath.settings`, `BnbPath.quantization_config`, CPU defaults), the FP32 model saved with
  ``save_pretrained`` and loaded back through transformers' bitsandbytes loader, as the path does;
  leaving layers in float appends their names to ``llm_int8_skip_modules`` (the path's default
  head modules stay there). 4-bit layers the fused CPU kernel cannot take are routed as the path
  routes them (`route_cpu_4bit_layers`).
"""

from __future__ import annotations

import gc
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kit.diagnose.metrics import sqnr_db
from kit.diagnose.records import LayerError
from kit.diagnose.torch_capture import capture
from kit.models.spec import ModelSpec


def _output_fn(spec: ModelSpec) -> Any:
    from kit.models.build import output_of

    return lambda model, x: output_of(model, spec, x)


def _run(model: Any, spec: ModelSpec, pixels: np.ndarray) -> np.ndarray:
    import torch

    from kit.models.build import output_of

    with torch.inference_mode():
        return output_of(model, spec, torch.from_numpy(np.ascontiguousarray(pixels))).float().numpy()


# --------------------------------------------------------------------------- torch.ao dynamic INT8


class TorchDynamicBackend:
    """``torch-int8-dynamic``: every nn.Linear to qint8 (per-tensor weights, activations per batch)."""

    reference_name = "torch FP32 (the same module before quantization)"

    def __init__(self, spec: ModelSpec, float_model: Any) -> None:
        import torch

        self.spec = spec
        self.float_model = float_model
        self.linears = [n for n, m in float_model.named_modules() if isinstance(m, torch.nn.Linear)]

    def quantize(self, keep: Sequence[str] = ()) -> Any:
        import torch
        from torch.ao.quantization import quantize_dynamic

        names = {n for n in self.linears if n not in set(keep)}
        # A set of types is the path's spec; a set of module names quantizes exactly those Linears
        # with the same default dynamic qconfig (qint8). Both copy the model (inplace=False).
        spec: set[Any] = {torch.nn.Linear} if not keep else names
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.ao's deprecation notice (recorded by the path)
            return quantize_dynamic(self.float_model, spec, dtype=torch.qint8).eval()

    def analyse(self, pixels: np.ndarray) -> tuple[list[LayerError], np.ndarray, np.ndarray]:
        qmodel = self.quantize()
        names = [n for n, m in qmodel.named_modules() if type(m).__module__.startswith("torch.ao.nn.quantized.dynamic")]
        weights = _weight_sqnrs(self.float_model, qmodel, names, _dynamic_weight_sqnr)
        return capture(self.float_model, qmodel, names, _output_fn(self.spec), pixels, weights)

    def quantized_output(self, keep: Sequence[LayerError], pixels: np.ndarray) -> np.ndarray:
        return _run(self.quantize([layer.name for layer in keep]), self.spec, pixels)

    def record(self) -> dict[str, Any]:
        import torch

        return {
            "method": "torch.ao.quantization.quantize_dynamic({nn.Linear}, dtype=qint8) as the path "
            "(kit/paths/torch_paths.py); kept-in-float layers: the other Linears' names as the qconfig spec",
            "quantized_engine": torch.backends.quantized.engine,
            "layers": "every nn.Linear",
        }

    def close(self) -> None:
        gc.collect()


def _weight_sqnrs(float_model: Any, qmodel: Any, names: Sequence[str], fn: Any) -> dict[str, float | None]:
    f, q = dict(float_model.named_modules()), dict(qmodel.named_modules())
    return {n: fn(n, f[n], q[n]) for n in names}


def _dynamic_weight_sqnr(name: str, float_layer: Any, q_layer: Any) -> float | None:
    weight = getattr(q_layer, "weight", None)
    if not callable(weight):
        return None
    return sqnr_db(float_layer.weight.detach().numpy(), weight().dequantize().numpy())


# --------------------------------------------------------------------------- bitsandbytes


class BnbBackend:
    """``bnb-int8`` / ``bnb-nf4`` / ``bnb-fp4`` on CPU, loaded as the path loads them."""

    reference_name = "torch FP32 (the module saved and reloaded by the bitsandbytes loader)"

    def __init__(self, spec: ModelSpec, float_model: Any, path_name: str, fingerprint: str) -> None:
        from kit.paths.base import PrepareContext, get_path
        from kit.paths.bnb_support import install_log_filter

        # bitsandbytes logs a cast warning at every LLM.int8 call and transformers draws progress
        # bars at every save and load; the search loads the model many times. Both are restored
        # by close().
        self._remove_filter = install_log_filter()
        self._bars = _progress_bars(False)
        self.spec = spec
        self.float_model = float_model
        self.path = get_path(path_name)
        self._tmp = tempfile.TemporaryDirectory(prefix="qkit-diagnose-bnb-")
        self.source = Path(self._tmp.name) / "float-model"
        float_model.save_pretrained(self.source, safe_serialization=True)
        ctx = PrepareContext(
            spec=spec,
            device="cpu",
            batch_size=1,
            build_float_model=lambda: float_model,
            work_dir=self._tmp.name,
            cache_dir=self._tmp.name,
            weights_fingerprint=fingerprint,
        )
        self.settings: dict[str, Any] = self.path.settings(ctx, float_model)  # type: ignore[attr-defined]
        self.routed: list[str] = []

    def quantize(self, keep: Sequence[str] = ()) -> Any:
        import torch
        import transformers

        from kit.models.build import model_class
        from kit.paths.bnb_support import route_cpu_4bit_layers, version_tuple

        s = dict(self.settings, skip_modules=list(self.settings["skip_modules"]) + list(keep))
        qconfig = self.path.quantization_config(s)  # type: ignore[attr-defined]
        # transformers renamed torch_dtype to dtype in 4.56 (as kit/paths/bnb.py).
        dtype_key = "dtype" if version_tuple(transformers.__version__)[:2] >= (4, 56) else "torch_dtype"
        kwargs: dict[str, Any] = {
            "quantization_config": qconfig,
            "device_map": {"": "cpu"},
            dtype_key: getattr(torch, s["float_dtype"]),
            "use_safetensors": True,
            "local_files_only": True,
            "trust_remote_code": False,
            **self.spec.model_kwargs,
        }
        attn = getattr(self.float_model.config, "_attn_implementation", None)
        if attn:
            kwargs["attn_implementation"] = attn
        model = model_class(self.spec).from_pretrained(str(self.source), **kwargs).eval()
        if self.path.quant_type != "int8":  # type: ignore[attr-defined]
            self.routed = route_cpu_4bit_layers(model, s["compute_dtype"])
        return model

    def analyse(self, pixels: np.ndarray) -> tuple[list[LayerError], np.ndarray, np.ndarray]:
        qmodel = self.quantize()
        names = [n for n, m in qmodel.named_modules() if type(m).__name__ in ("Linear8bitLt", "Linear4bit")]
        weights = _weight_sqnrs(self.float_model, qmodel, names, _bnb_weight_sqnr)
        try:
            return capture(self.float_model, qmodel, names, _output_fn(self.spec), pixels, weights)
        finally:
            del qmodel
            gc.collect()

    def quantized_output(self, keep: Sequence[LayerError], pixels: np.ndarray) -> np.ndarray:
        model = self.quantize([layer.name for layer in keep])
        try:
            return _run(model, self.spec, pixels)
        finally:
            del model
            gc.collect()

    def record(self) -> dict[str, Any]:
        return {
            "method": f"bitsandbytes through transformers' loader as the path {self.path.name} "
            "(kit/paths/bnb.py), device cpu; kept-in-float layers appended to llm_int8_skip_modules",
            "settings": {k: v for k, v in self.settings.items() if not k.endswith("_source")},
            "settings_source": {k: v for k, v in self.settings.items() if k.endswith("_source")},
            "cpu_generic_4bit_layers": list(self.routed),
        }

    def close(self) -> None:
        self._tmp.cleanup()
        self._remove_filter()
        _progress_bars(self._bars)
        gc.collect()


def _bnb_weight_sqnr(name: str, float_layer: Any, q_layer: Any) -> float | None:
    """The dequantized bitsandbytes weight against FP32; None where this bitsandbytes hides it."""
    try:
        import bitsandbytes.functional as F

        weight = q_layer.weight
        state = getattr(weight, "quant_state", None)
        if state is not None:
            deq = F.dequantize_4bit(weight.data, state).float()
        else:
            scb = getattr(weight, "SCB", None)
            if scb is None:
                return None
            deq = weight.data.float() * scb.float().view(-1, 1) / 127.0
        return sqnr_db(float_layer.weight.detach().numpy(), deq.reshape(float_layer.weight.shape).numpy())
    except Exception:  # internals differ between bitsandbytes versions: the figure is optional
        return None


def _progress_bars(enabled: bool) -> bool:
    """Turn transformers' progress bars on or off; returns whether they were on."""
    from transformers.utils import logging as hf_logging

    was = bool(hf_logging.is_progress_bar_enabled())
    if enabled:
        hf_logging.enable_progress_bar()
    else:
        hf_logging.disable_progress_bar()
    return was
