"""One machine identity: the result folder's tag, merge's tag and the report's label agree."""

from __future__ import annotations

from kit.hardware.machine import machine_name, machine_tag, short_name


def test_a_gpu_names_the_machine_else_the_cpu() -> None:
    env = {"gpu": {"name": "NVIDIA H100 80GB HBM3"}, "cpu": {"model": "AMD EPYC 7B13"}}
    assert machine_name(env) == "NVIDIA H100 80GB HBM3"
    assert machine_name({"gpu": None, "cpu": {"model": "AMD EPYC 7B13"}}) == "AMD EPYC 7B13"
    assert machine_name({"gpu": {"name": "  "}, "cpu": {}}) == "unknown"
    assert machine_name("not a record") == "unknown"


def test_tags_are_directory_safe_and_labels_drop_vendor_words() -> None:
    assert machine_tag("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3"
    assert machine_tag("Intel(R) Xeon(R) Processor") == "intel-r-xeon-r-processor"
    assert machine_tag("///") == "unknown"
    assert short_name("NVIDIA GeForce RTX 4090 (cuda)") == "RTX 4090 (cuda)"
    assert short_name("Tesla T4") == "T4"
    assert short_name("NVIDIA") == "NVIDIA"  # nothing left: keep the label
