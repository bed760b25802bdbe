"""The CUDA code paths on a machine without CUDA, driven through test doubles.

CI never has a GPU and the `cuda`-marked tests skip there, so these tests swap in stand-ins for
the few torch.cuda and NVML calls the trackers make (allocator statistics, CUDA events, device
properties, an NVML with two cards) and check what the kit records from them: which card's NVML
figures, which memory figure is the peak and how each is labelled, CUDA-event timing, TF32 flags,
and that a CUDA cell document carrying them passes the result schema. The real thing is checked
by the `cuda`-marked tests on a GPU machine.
"""

from __future__ import annotations

import copy
import json
import sys
import time
import types
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from kit.measure import environment, memory  # noqa: E402
from kit.measure.latency import LatencyConfig, LatencyTracker  # noqa: E402
from kit.measure.nvml import nvml_handle, torch_device_uuid  # noqa: E402

REAL_TORCH_DEVICE_UUID = torch_device_uuid

MIB = 2**20


# --------------------------------------------------------------------------------- NVML double


class _Mem:
    def __init__(self, used: int, total: int) -> None:
        self.used, self.total = used, total


def fake_pynvml(cards: list[dict[str, Any]]) -> types.ModuleType:
    """A pynvml with ``cards`` (dicts: uuid, name, used, total, sm, mem, power_mw), NVML numbering."""
    m = types.ModuleType("pynvml")
    m.NVML_CLOCK_SM, m.NVML_CLOCK_MEM, m.NVML_TEMPERATURE_GPU = 1, 2, 0
    m.nvmlInit = lambda: None

    def by_uuid(uuid: str) -> dict[str, Any]:
        for card in cards:
            if card["uuid"] == uuid:
                return card
        raise RuntimeError("NVML_ERROR_NOT_FOUND")

    m.nvmlDeviceGetHandleByUUID = by_uuid
    m.nvmlDeviceGetHandleByIndex = lambda i: cards[i]
    m.nvmlDeviceGetName = lambda h: h["name"].encode()  # bytes, as older pynvml returns
    m.nvmlSystemGetDriverVersion = lambda: b"550.54.15"
    m.nvmlSystemGetCudaDriverVersion = lambda: 12040
    m.nvmlDeviceGetClockInfo = lambda h, kind: h["sm"] if kind == m.NVML_CLOCK_SM else h["mem"]
    m.nvmlDeviceGetMaxClockInfo = lambda h, kind: h["sm"] + 100 if kind == m.NVML_CLOCK_SM else h["mem"]
    m.nvmlDeviceGetPowerManagementLimit = lambda h: h["power_mw"]
    m.nvmlDeviceGetTemperature = lambda h, kind: 40
    m.nvmlDeviceGetMemoryInfo = lambda h: _Mem(h["used"], h["total"])
    m.nvmlDeviceGetPowerUsage = lambda h: h["power_mw"] - 50_000
    m.nvmlDeviceGetCurrentClocksThrottleReasons = lambda h: h.get("throttle", 0)  # the older name only
    return m


CARDS = [
    {
        "uuid": "GPU-aaaa",
        "name": "NVIDIA A100-SXM4-80GB",
        "used": 1 * MIB,
        "total": 80 * 1024 * MIB,
        "sm": 1410,
        "mem": 1593,
        "power_mw": 400_000,
    },
    {
        "uuid": "GPU-bbbb",
        "name": "NVIDIA H100 80GB HBM3",
        "used": 5 * 1024 * MIB,
        "total": 80 * 1024 * MIB,
        "sm": 1980,
        "mem": 2619,
        "power_mw": 700_000,
        "throttle": 0x4 | 0x20,
    },
]


@pytest.fixture
def nvml(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    module = fake_pynvml(CARDS)
    monkeypatch.setitem(sys.modules, "pynvml", module)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return module


def test_nvml_handle_matches_torch_device_by_uuid_not_index(nvml: types.ModuleType) -> None:
    # torch's device 0 is the H100 (NVML's 1): by index NVML would report the A100.
    handle, how = nvml_handle(nvml, 0, uuid="GPU-bbbb")
    assert handle["name"] == "NVIDIA H100 80GB HBM3" and how == "uuid GPU-bbbb"


def test_nvml_handle_without_uuid_follows_cuda_visible_devices(
    nvml: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    handle, how = nvml_handle(nvml, 0, uuid="GPU-unknown")
    assert handle is CARDS[0] and "unset" in how
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    handle, how = nvml_handle(nvml, 0, uuid="GPU-unknown")
    assert handle is CARDS[1] and "CUDA_VISIBLE_DEVICES=1" in how
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-bbbb")  # UUID form, but torch gave no UUID
    handle, how = nvml_handle(nvml, 0, uuid="GPU-unknown")
    assert "unverified" in how


def test_environment_records_the_card_torch_uses(nvml: types.ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("kit.measure.nvml.torch_device_uuid", lambda index: "GPU-bbbb")
    gpu = environment._nvml_gpu(0)
    assert gpu["nvml_name"] == "NVIDIA H100 80GB HBM3"  # bytes decoded
    assert gpu["driver"] == "550.54.15" and gpu["cuda_driver_api"] == 12040
    assert (gpu["sm_clock_mhz"], gpu["mem_clock_mhz"], gpu["max_sm_clock_mhz"]) == (1980, 2619, 2080)
    assert gpu["power_limit_w"] == 700.0
    assert gpu["nvml_device_matched_by"] == "uuid GPU-bbbb"


def test_clocks_after_timing_read_the_card_and_name_its_throttle_reasons(
    nvml: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("kit.measure.nvml.torch_device_uuid", lambda index: "GPU-bbbb")
    clocks = environment.gpu_clocks_now(0)
    assert clocks["sm_clock_mhz"] == 1980 and clocks["power_draw_w"] == 650.0
    assert clocks["clock_event_reasons"] == ["sw_power_cap", "sw_thermal_slowdown"]
    assert clocks["device_matched_by"] == "uuid GPU-bbbb"
    nvml.nvmlDeviceGetCurrentClocksEventReasons = lambda h: 0x1  # the newer name wins where present
    assert environment.gpu_clocks_now(0)["clock_event_reasons"] == ["gpu_idle"]


def test_environment_says_why_nvml_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails
    assert "nvml_error" in environment._nvml_gpu(0)
    assert "nvml_error" in environment.gpu_clocks_now(0)
    assert "not installed" in memory.nvml_used_mb(0)["error"]


# --------------------------------------------------------------------------------- torch.cuda double


class FakeAllocator:
    """torch.cuda's allocator statistics, driven by the test."""

    def __init__(self) -> None:
        self.allocated = 100 * MIB
        self.peak = self.allocated
        self.reserved_peak = 0
        self.outside_torch = 0  # another runtime's arena (ONNX Runtime's), invisible to torch
        self.context = 500 * MIB
        self.total = 80 * 1024 * MIB

    def mem_get_info(self) -> tuple[int, int]:
        used = self.context + self.allocated + self.outside_torch
        return self.total - used, self.total

    def alloc(self, n: int) -> None:
        self.allocated += n
        self.peak = max(self.peak, self.allocated)
        self.reserved_peak = max(self.reserved_peak, self.peak + 32 * MIB)

    def free(self, n: int) -> None:
        self.allocated -= n

    def reset(self) -> None:
        self.peak = self.allocated
        self.reserved_peak = self.allocated


@pytest.fixture
def fake_cuda(monkeypatch: pytest.MonkeyPatch, nvml: types.ModuleType) -> FakeAllocator:
    alloc = FakeAllocator()
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **k: None)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda *a, **k: alloc.reset())
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda *a, **k: alloc.allocated)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda *a, **k: alloc.peak)
    monkeypatch.setattr(torch.cuda, "max_memory_reserved", lambda *a, **k: alloc.reserved_peak)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *a, **k: alloc.mem_get_info())
    monkeypatch.setattr("kit.measure.nvml.torch_device_uuid", lambda index: "GPU-bbbb")
    return alloc


def test_cuda_memory_tracker_peak_is_max_allocated_after_reset(fake_cuda: FakeAllocator) -> None:
    fake_cuda.alloc(900 * MIB)  # before the cell: must not count as its peak
    fake_cuda.free(900 * MIB)
    with memory.MemoryTracker("cuda") as mem:
        fake_cuda.alloc(300 * MIB)  # weights
        fake_cuda.alloc(250 * MIB)  # a float copy the loader frees before the model is ready
        fake_cuda.free(250 * MIB)
        mem.mark_prepared()
        mem.start_inference()  # the inference phase starts from a reset peak
        fake_cuda.alloc(200 * MIB)  # activations at their peak
        fake_cuda.free(200 * MIB)
        mem.end_inference()
    r = mem.result
    assert r["peak_mb"] == pytest.approx(650)  # whole cell: 100 held before + 300 + 250 while loading
    assert r["peak_source"].startswith("torch.cuda.max_memory_allocated over the whole cell")
    phases = r["phases"]
    assert phases["load"]["peak_mb"] == pytest.approx(650)
    assert phases["steady"]["mb"] == pytest.approx(400)  # weights on the device, the freed copy gone
    assert phases["inference"]["peak_mb"] == pytest.approx(600)  # reset after prepare: 400 + 200 activations
    assert r["baseline_mb"] == pytest.approx(100)
    assert r["after_prepare"]["cuda_allocated_mb"] == pytest.approx(400)  # weights-only footprint
    assert r["cuda"]["max_memory_reserved_mb"] >= r["cuda"]["max_memory_allocated_mb"]
    assert r["nvml"]["used_mb"] == pytest.approx(5 * 1024)  # the H100's figure, not NVML index 0's
    assert "not a peak" in r["nvml"]["source"] and r["nvml"]["device_matched_by"] == "uuid GPU-bbbb"


def test_cuda_memory_of_a_runtime_outside_torch_is_device_growth(fake_cuda: FakeAllocator) -> None:
    # ONNX Runtime's CUDA provider allocates in its own arena: torch's statistic stays at what
    # torch held, so the peak must come from device-wide used memory, labelled so.
    with memory.MemoryTracker("cuda") as mem:
        fake_cuda.outside_torch += 700 * MIB
        mem.mark_prepared()
        mem.device_allocator = "onnxruntime"
    r = mem.result
    assert r["cuda"]["max_memory_allocated_mb"] == pytest.approx(100)
    assert r["peak_mb"] == pytest.approx(700)
    assert "outside torch's allocator" in r["peak_source"] and r["device_allocator"] == "onnxruntime"
    assert r["after_prepare"]["cuda_device_used_mb"] == pytest.approx(500 + 100 + 700)


class FakeEvent:
    """torch.cuda.Event on the host clock: elapsed_time in ms between two record() calls."""

    def __init__(self, enable_timing: bool = False) -> None:
        assert enable_timing, "the tracker must ask for timing events"
        self.t: float | None = None

    def record(self) -> None:
        self.t = time.perf_counter()

    def synchronize(self) -> None:
        assert self.t is not None, "synchronize on an event never recorded"

    def elapsed_time(self, end: FakeEvent) -> float:
        assert self.t is not None and end.t is not None
        return (end.t - self.t) * 1000.0


def test_cuda_latency_uses_events_around_each_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "Event", FakeEvent)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **k: None)
    cfg = LatencyConfig(warmup_iterations=1, warmup_s=0.0, min_iterations=5, min_duration_s=0.0)
    result = LatencyTracker(cfg, device="cuda").run(lambda: time.sleep(0.002))
    assert result.timer == "cuda_event"
    assert len(result.samples_ms) == 5
    assert all(1.5 <= s < 50 for s in result.samples_ms)


def test_math_settings_record_tf32_flags_when_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    # allow_tf32 is a property of torch's backend modules, not a plain attribute: set and restore.
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = True, False
        s = environment.math_settings()
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
    assert s["tf32_matmul"] is True and s["tf32_cudnn"] is False and "cudnn_benchmark" in s


# --------------------------------------------------------------------------------- documents


def test_compute_peak_matches_the_h100_variant() -> None:
    from kit.measure.compute import peak_tflops

    assert peak_tflops("NVIDIA H100 PCIe", "fp16")["peak_tflops"] == 756.0
    assert peak_tflops("NVIDIA H100 80GB HBM3", "fp16")["peak_tflops"] == 989.5


REFERENCE_CELL = (
    Path(__file__).resolve().parents[1]
    / "results"
    / "reference"
    / "cpu-intel-xeon-2core"
    / "cells"
    / "vit-base-224-production"
    / "torch-bf16__cpu__bs1.json"
)


def _cuda_doc(fake_cuda: FakeAllocator, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A measured reference cell turned into a CUDA one with what the trackers record there."""
    doc = json.loads(REFERENCE_CELL.read_text())
    doc["cell"]["device"] = "cuda"
    with memory.MemoryTracker("cuda") as mem:
        fake_cuda.alloc(50 * MIB)
        mem.mark_prepared()
    doc["memory"] = mem.result
    doc["environment"]["gpu"] = {
        "name": "NVIDIA H100 80GB HBM3",
        "capability": "9.0",
        "memory_mb": 81559.0,
        **environment._nvml_gpu(0),
    }
    doc["environment"]["cuda"] = {"available": True, "torch_cuda_build": "12.1", "cudnn": 8902}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    doc["math"] = {**environment.math_settings(), "gpu_clocks_after_timing": environment.gpu_clocks_now(0)}
    return doc


def test_cuda_cell_document_passes_the_schema_and_needs_its_gpu_record(
    fake_cuda: FakeAllocator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kit.documents import problem

    doc = _cuda_doc(fake_cuda, monkeypatch)
    assert problem(doc, "result") is None
    for name, breaks in {
        "no gpu": lambda d: d["environment"].__setitem__("gpu", None),
        "no cuda": lambda d: d["environment"].__setitem__("cuda", None),
        "no allocator peak": lambda d: d["memory"].__setitem__("cuda", None),
        "no nvml record": lambda d: d["memory"].pop("nvml"),
        "no card name": lambda d: d["environment"]["gpu"].pop("name"),
        "no clocks and no reason": lambda d: d["environment"]["gpu"].pop("sm_clock_mhz"),
        "no tf32 flags": lambda d: d["math"].pop("tf32_matmul"),
        "no clocks after timing": lambda d: d["math"].pop("gpu_clocks_after_timing"),
        "clocks without reasons": lambda d: d["math"]["gpu_clocks_after_timing"].pop("clock_event_reasons"),
        "no max allocated": lambda d: d["memory"]["cuda"].pop("max_memory_allocated_mb"),
    }.items():
        bad = copy.deepcopy(doc)
        breaks(bad)
        assert problem(bad, "result"), f"a CUDA cell with {name} must be refused"
    without_nvml = copy.deepcopy(doc)
    for key in ("driver", "sm_clock_mhz", "mem_clock_mhz", "power_limit_w"):
        without_nvml["environment"]["gpu"].pop(key)
    without_nvml["environment"]["gpu"]["nvml_error"] = "ImportError: No module named 'pynvml'"
    assert problem(without_nvml, "result") is None  # the reason stands in for the clocks


# --------------------------------------------------------------------------------- device record and stack checks


class FakeProps:
    name = "NVIDIA H100 80GB HBM3"
    major, minor = 9, 0
    total_memory = 80 * 1024 * MIB
    multi_processor_count = 132
    uuid = "bbbb"  # torch reports it without NVML's "GPU-" prefix


def test_gpu_info_records_the_card_and_its_nvml_figures(
    fake_cuda: FakeAllocator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: FakeProps())
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.backends.cudnn, "version", lambda: 8902)
    # torch's own UUID lookup this time (the fixture stubs it): FakeProps.uuid -> "GPU-bbbb".
    monkeypatch.setattr("kit.measure.nvml.torch_device_uuid", REAL_TORCH_DEVICE_UUID)
    gpu, cuda = environment.gpu_info()
    assert gpu["name"] == "NVIDIA H100 80GB HBM3" and gpu["capability"] == "9.0" and gpu["sm_count"] == 132
    assert gpu["memory_mb"] == pytest.approx(80 * 1024)
    assert gpu["nvml_device_matched_by"] == "uuid GPU-bbbb" and gpu["sm_clock_mhz"] == 1980
    assert cuda["available"] is True and cuda["cudnn"] == 8902


def test_stack_check_finds_a_driver_older_than_torch_cuda(
    nvml: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kit.run import stack_check

    monkeypatch.setattr(torch.version, "cuda", "12.1")
    nvml.nvmlSystemGetCudaDriverVersion = lambda: 11080
    problems = stack_check.torch_cuda_driver()
    assert [p.id for p in problems] == ["torch-cuda-driver"] and "11.8" in problems[0].message
    nvml.nvmlSystemGetCudaDriverVersion = lambda: 12040
    assert stack_check.torch_cuda_driver() == []


def test_stack_check_flags_tf32_only_when_it_is_really_on(monkeypatch: pytest.MonkeyPatch) -> None:
    from kit.run import stack_check

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (9, 0))
    monkeypatch.delenv("TORCH_ALLOW_TF32_CUBLAS_OVERRIDE", raising=False)
    monkeypatch.delenv("NVIDIA_TF32_OVERRIDE", raising=False)
    saved = torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = False
        assert stack_check.tf32_on_for_fp32() == []
        monkeypatch.setenv("NVIDIA_TF32_OVERRIDE", "1")  # never turns TF32 on
        assert stack_check.tf32_on_for_fp32() == []
        torch.backends.cuda.matmul.allow_tf32 = True
        assert [p.id for p in stack_check.tf32_on_for_fp32()] == ["tf32-fp32"]
        monkeypatch.setenv("NVIDIA_TF32_OVERRIDE", "0")  # off in cuBLAS whatever torch says
        assert stack_check.tf32_on_for_fp32() == []
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (7, 5))  # Turing: no TF32
    assert stack_check.tf32_on_for_fp32() == []


def test_fp32_math_class_follows_the_tf32_override() -> None:
    from kit.measure.compute import math_class

    on = {"tf32_matmul": True, "float32_matmul_precision": "highest", "env": {}}
    assert math_class("fp32", math=on)[0] == "tf32"
    assert math_class("fp32", math={**on, "env": {"NVIDIA_TF32_OVERRIDE": "0"}})[0] == "fp32"


def test_a_crashing_stack_check_is_reported_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    from kit.run import stack_check

    def broken() -> list:
        raise RuntimeError("driver exploded")

    monkeypatch.setattr(stack_check, "CHECKS", [broken])
    problems = stack_check.run_stack_checks()
    assert len(problems) == 1 and "check crashed: RuntimeError: driver exploded" in problems[0].message
