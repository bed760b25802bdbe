"""Precision paths: one module per family (torch, bitsandbytes, onnxruntime)."""

from kit.paths.base import PrecisionPath, PrepareContext, PreparedModel, get_path, path_names

__all__ = ["PrecisionPath", "PrepareContext", "PreparedModel", "get_path", "path_names"]
