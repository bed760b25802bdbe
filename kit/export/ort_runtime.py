"""ONNX Runtime helpers: which execution providers exist here, whether a session keeps them,
session options, and what a session actually ran with.

ORT's provider handling has two silent failure modes the kit must not inherit:

* a provider listed by ``get_available_providers()`` (it is compiled in) can still be dropped
  when a session is made (CUDA or cuDNN libraries missing or of the wrong major version): ORT
  logs one line and goes on with the CPU provider;
* a provider kept by the session can still leave single nodes to the CPU provider.

`probe_provider` answers the first with a real session on a tiny in-memory graph;
`session_record` records, for the second, how many nodes each provider was given.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from kit.errors import first_line

# Short names accepted by the ``provider`` path option, and the provider each one means.
PROVIDER_ALIASES: dict[str, str] = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
# Which providers may serve which kit device, the default first.
DEVICE_PROVIDERS: dict[str, tuple[str, ...]] = {
    "cpu": ("CPUExecutionProvider",),
    "cuda": ("CUDAExecutionProvider", "TensorrtExecutionProvider"),
}
GPU_PROVIDERS: tuple[str, ...] = ("CUDAExecutionProvider", "TensorrtExecutionProvider")


def ort_import_status() -> tuple[bool, str]:
    """Whether onnxruntime and onnx import here, and if not, why."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        return False, f"ONNX paths need onnx and onnxruntime (pip install 'qkit[onnx]'): {exc}"
    return True, ""


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def provider_name(alias: str) -> str:
    """Full provider name for a short alias or a full name; ValueError naming the valid ones."""
    if alias in PROVIDER_ALIASES.values():
        return alias
    try:
        return PROVIDER_ALIASES[alias.lower()]
    except KeyError:
        valid = ", ".join([*PROVIDER_ALIASES, *PROVIDER_ALIASES.values()])
        raise ValueError(f"unknown ONNX Runtime provider {alias!r}; valid: {valid}") from None


def resolve_provider(device: str, requested: str | None) -> str:
    """The provider a cell on ``device`` uses: the ``provider`` option, else the device default.

    ValueError when the provider cannot serve the device (e.g. ``provider=tensorrt`` on cpu).
    """
    if device not in DEVICE_PROVIDERS:
        raise ValueError(f"unknown device {device!r}; valid devices: {', '.join(DEVICE_PROVIDERS)}")
    if not requested:
        return DEVICE_PROVIDERS[device][0]
    name = provider_name(requested)
    if name not in DEVICE_PROVIDERS[device]:
        raise ValueError(
            f"provider {name} does not run on device {device} (it serves: "
            f"{', '.join(d for d, ps in DEVICE_PROVIDERS.items() if name in ps)})"
        )
    return name


def _probe_model_bytes() -> bytes:
    """A one-node float graph (Y = X + X) that every provider can run."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph([helper.make_node("Add", ["X", "X"], ["Y"])], "qkit_probe", [x], [y])
    # Opset 13 / IR 8: old enough for every ORT the kit supports (the CUDA image has 1.18).
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    return model.SerializeToString()


@functools.cache
def probe_provider(name: str) -> tuple[bool, str]:
    """Open a session on a tiny in-memory graph asking for ``name``; report whether ORT kept it.

    Returns ``(True, "")`` when the session's first provider is ``name`` and a run succeeds;
    otherwise ``(False, reason)``. Cached per process: the answer does not change within a run.
    """
    ok, why = ort_import_status()
    if not ok:
        return False, why
    import numpy as np
    import onnxruntime as ort

    listed = available_providers()
    if name not in listed:
        return (
            False,
            f"{name} is not in onnxruntime.get_available_providers() {listed} "
            f"(onnxruntime {ort.__version__}{_build_hint(name)})",
        )
    options = ort.SessionOptions()
    options.log_severity_level = 3  # the probe's own fallback warning is reported below instead
    try:
        session = ort.InferenceSession(_probe_model_bytes(), options, providers=[name])
        kept = session.get_providers()
        session.run(None, {"X": np.ones((1, 4), dtype=np.float32)})
    except Exception as exc:  # ORT raises its own Fail/RuntimeException types
        return False, f"a session asking for {name} failed: {first_line(exc)}"
    if not kept or kept[0] != name:
        return False, (
            f"ORT lists {name} but a session dropped it (providers kept: {kept}); "
            "usually the CUDA/cuDNN/TensorRT libraries it was built for are missing "
            "or of another major version (`qkit env --check`)"
        )
    return True, ""


def _build_hint(name: str) -> str:
    import onnxruntime as ort

    if name in GPU_PROVIDERS and ort.get_device() == "CPU":
        return ", a CPU build: GPU providers need onnxruntime-gpu"
    return ""


def provider_status(name: str) -> tuple[bool, str]:
    """`probe_provider`, with the reason phrased for a skipped cell."""
    kept, why = probe_provider(name)
    return (True, "") if kept else (False, f"ONNX Runtime cannot use {name}: {why}")


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def session_options(intra_op_threads: int | None = None, record_assignment: bool = True) -> Any:
    """Session options the kit uses everywhere: every graph optimisation, sequential execution,
    intra-op threads = the usable cores (ORT's default counts physical cores of the host, not
    the cores this process may use), one inter-op thread (sequential mode does not use more)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = intra_op_threads or usable_cores()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if record_assignment:
        options.add_session_config_entry("session.record_ep_graph_assignment_info", "1")
    return options


def describe_options(options: Any) -> dict[str, Any]:
    return {
        "graph_optimization_level": str(options.graph_optimization_level).split(".")[-1],
        "execution_mode": str(options.execution_mode).split(".")[-1],
        "intra_op_num_threads": options.intra_op_num_threads,
        "inter_op_num_threads": options.inter_op_num_threads,
    }


def nodes_by_provider(session: Any) -> dict[str, int] | None:
    """How many nodes of the optimised graph each provider runs (ORT >= 1.23), else None."""
    getter = getattr(session, "get_provider_graph_assignment_info", None)
    if getter is None:
        return None
    try:
        counts: dict[str, int] = {}
        for subgraph in getter():
            counts[subgraph.ep_name] = counts.get(subgraph.ep_name, 0) + len(subgraph.get_nodes())
        return counts
    except Exception:  # recording not enabled or unsupported by this build
        return None


def session_record(session: Any, options: Any, provider_options: dict[str, Any] | None) -> dict[str, Any]:
    """What a session actually runs with, for the result's path_info."""
    import onnxruntime as ort

    providers = session.get_providers()
    return {
        "execution_provider": providers[0] if providers else None,
        "session_providers": list(providers),
        "provider_options_requested": provider_options or {},
        "nodes_by_provider": nodes_by_provider(session),
        "session_options": describe_options(options),
        "onnxruntime_version": ort.__version__,
        "onnxruntime_device": ort.get_device(),
    }
