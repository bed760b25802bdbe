"""Comparisons built from result documents: compare-int8 (every INT8 method beside FP32)."""
