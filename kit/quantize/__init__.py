"""Post-training quantizers that produce new model files (ONNX Runtime's dynamic and static QDQ)."""
