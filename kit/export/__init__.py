"""Model export: PyTorch -> ONNX with a recorded exporter, checked against PyTorch, cached."""

from kit.export.onnx_export import (
    EXPORT_CHECK_COSINE,
    ExportCheckFailed,
    OnnxExport,
    OnnxModelError,
    get_or_export,
    open_session,
    validate_onnx_file,
)

__all__ = [
    "EXPORT_CHECK_COSINE",
    "ExportCheckFailed",
    "OnnxExport",
    "OnnxModelError",
    "get_or_export",
    "open_session",
    "validate_onnx_file",
]
