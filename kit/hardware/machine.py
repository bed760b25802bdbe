"""A machine's identity, said one way everywhere: its name, its directory-safe tag, its short label.

A machine is named by its GPU where it has one, else by its CPU model, as its environment record
says (`kit.measure.environment`). The result folders (``results/<tag>/``), ``qkit merge`` and the
report's column headers all derive from these three functions, so the same machine never gets two
names.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

UNKNOWN = "unknown"
_VENDOR_PREFIX = re.compile(r"^(?:(?:nvidia|geforce|tesla)\s+)+", re.IGNORECASE)


def _text(record: Any, key: str) -> str | None:
    value = record.get(key) if isinstance(record, Mapping) else None
    return value.strip() if isinstance(value, str) and value.strip() else None


def gpu_name(environment: Any) -> str | None:
    """The GPU's name in an environment record, or None (no GPU, or no record)."""
    return _text(environment.get("gpu") if isinstance(environment, Mapping) else None, "name")


def cpu_name(environment: Any) -> str | None:
    """The CPU model in an environment record, or None."""
    return _text(environment.get("cpu") if isinstance(environment, Mapping) else None, "model")


def machine_name(environment: Any) -> str:
    """The GPU's name where the record has one, else the CPU model, else "unknown"."""
    return gpu_name(environment) or cpu_name(environment) or UNKNOWN


def machine_tag(name: str) -> str:
    """A directory-safe, lower-case tag of a machine name: 'NVIDIA H100 80GB HBM3' -> 'nvidia-h100-80gb-hbm3'."""
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower() or UNKNOWN


def short_name(label: str) -> str:
    """'NVIDIA GeForce RTX 4090 (cuda)' -> 'RTX 4090 (cuda)': vendor words say nothing in a column header."""
    return _VENDOR_PREFIX.sub("", label) or label
