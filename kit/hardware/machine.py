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


# The matrix instructions that decide CPU speed for these models, best first. A cloud VM's model
# string can be generic ("Intel(R) Xeon(R) Processor"): two hosts with that one name ran the kit's
# torch-bf16 ViT-B/16 at 248 ms (no AMX) and 51 ms (AMX), so the name carries the best one present.
MATRIX_ISA: tuple[tuple[str, str], ...] = (
    ("amx_int8", "AMX"),
    ("amx_bf16", "AMX"),
    ("avx512_vnni", "AVX512-VNNI"),
    ("avx_vnni", "AVX-VNNI"),
    ("avx512f", "AVX512"),
    ("avx2", "AVX2"),
)


def cpu_name(environment: Any) -> str | None:
    """The CPU model in an environment record with its best matrix ISA (``MATRIX_ISA``) where the
    record lists the ISA flags, e.g. 'Intel(R) Xeon(R) Processor [AMX]'; None without a model."""
    cpu = environment.get("cpu") if isinstance(environment, Mapping) else None
    model = _text(cpu, "model")
    isa = cpu.get("isa") if model and isinstance(cpu, Mapping) else None
    if not isinstance(isa, Mapping):
        return model
    best = next((label for flag, label in MATRIX_ISA if isa.get(flag) is True), None)
    return f"{model} [{best}]" if best else model


def machine_name(environment: Any) -> str:
    """The GPU's name where the record has one, else the CPU model, else "unknown"."""
    return gpu_name(environment) or cpu_name(environment) or UNKNOWN


def machine_tag(name: str) -> str:
    """A directory-safe, lower-case tag of a machine name: 'NVIDIA H100 80GB HBM3' -> 'nvidia-h100-80gb-hbm3'."""
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower() or UNKNOWN


def short_name(label: str) -> str:
    """'NVIDIA GeForce RTX 4090 (cuda)' -> 'RTX 4090 (cuda)': vendor words say nothing in a column header."""
    return _VENDOR_PREFIX.sub("", label) or label
