"""``qkit diagnose``: which layers of a quantized path cost its fidelity against FP32.

For one model and one quantized path, on the same seeded inputs as FP32:

* per quantized layer, the error it *adds* (local: its quantized output against the FP32 layer's
  output, both fed the FP32 model's input to that layer) and the error *accumulated* at that
  depth (the whole quantized model's activation there against FP32's), as SQNR (dB) and cosine;
* the layers sorted worst first (lowest local SQNR);
* the smallest worst-first prefix of layers to keep in float that brings the final output's
  cosine to a target, each candidate verified by quantizing the model again without those layers
  and measuring the final output;
* a figure of both errors by depth.

Modules, one job each: `metrics` (the definitions), `records` (what a diagnosis holds),
`torch_capture` (hooks on torch models), `torch_methods` (torch.ao dynamic INT8 and
bitsandbytes, each able to leave named layers in float), `ort_qdq` (ONNX Runtime static QDQ through
``onnxruntime.quantization.qdq_loss_debug``), `keep_float` (the search), `figure`, `document`
(the JSON document and the text table), `run` (the entry point).
"""

from __future__ import annotations

from kit.diagnose.records import Diagnosis, KeepInFloat, LayerError
from kit.diagnose.run import DEFAULT_IMAGES, DEFAULT_TARGET_COSINE, SUPPORTED_PATHS, diagnose

__all__ = [
    "DEFAULT_IMAGES",
    "DEFAULT_TARGET_COSINE",
    "SUPPORTED_PATHS",
    "Diagnosis",
    "KeepInFloat",
    "LayerError",
    "diagnose",
]
