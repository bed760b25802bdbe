"""The study's models: registry (data, no heavy imports) and build (torch/transformers).

Import `kit.models.build` explicitly where torch is wanted; this package only re-exports the
registry so that listing models stays cheap.
"""

from kit.models.registry import MODELS, ModelSpec, get_model, model_ids

__all__ = ["MODELS", "ModelSpec", "get_model", "model_ids"]
