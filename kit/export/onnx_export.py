"""PyTorch -> ONNX export, checked against PyTorch FP32 and cached per run.

Exporter decision
-----------------
* ``torch.onnx.export(dynamo=True)`` (torch.export + onnxscript) where the installed torch has
  it (>= 2.5) and onnxscript imports: the current CPU stack (torch 2.13, ORT 1.32). Opset 20, the
  first with a ``Gelu`` op: at opset 18 the exporter writes GELU as Div/Erf/Mul/Add, which
  ORT 1.32 leaves unfused (so no BiasGelu either), costing the FP32 and INT8 graphs alike.
  ORT reads opset 20 from 1.17 on.
* ``torch.onnx.export(dynamo=False)`` (TorchScript) otherwise: the CUDA image's torch 2.1, or when
  the dynamo exporter fails on a model (the failure is recorded). Opset 17, the newest that
  torch 2.1's TorchScript exporter fully supports.
* optimum's exporter (the optimum-onnx package) is not used: optimum-onnx 0.1.0 requires
  transformers < 4.58 and transformers 5 has no ``optimum.exporters.onnx``; installing both makes
  pip downgrade transformers. Every export records this as ``optimum_exporter``.

Both exporters trace the model with **eager attention**: the dynamo exporter decomposes SDPA with
a NaN guard (IsNaN + Where per layer, ~10% of the INT8 ViT-B/16 run time) and cannot export
BEiT's SDPA path at all ("Cannot view a tensor with shape ..."); eager attention is the same math.

Every export is run by ONNX Runtime (CPU) on seeded inputs and compared with the PyTorch FP32
output of the same module: cosine >= `EXPORT_CHECK_COSINE` or the export is refused. Models whose
weights pass protobuf's 2 GiB limit (ViT-H/14) are written with their tensors in ONE external
data file beside the graph (``model.onnx.data``), whichever exporter wrote them.

Cache: ``<cache_dir>/onnx/<model>/<key>/`` where key hashes (model, weights fingerprint,
exporter, its version, opset, attention implementation). A finished entry is renamed into place
atomically with a ``meta.json`` listing its files and sizes; an entry whose files are missing or
of another size (a truncated copy) is reported in the record and exported again.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import io
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kit.errors import one_line
from kit.export.cache_entry import cached_entry

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from kit.models.registry import ModelSpec

EXPORT_CHECK_COSINE = 0.9999
CHECK_BATCH = 2  # > 1 so a batch dimension specialised to 1 by the tracer is caught
CHECK_SEED = 0xE4C0  # export-check images: apart from the measurement (1234) and fidelity (1235) seeds
DYNAMO_OPSET = 20
LEGACY_OPSET = 17
# Weights go to one external data file above this size. protobuf cannot serialise a message over
# 2 GiB, and well below that an inline model is slow to handle: every metadata read (files, bytes
# by dtype, the checker) parses all the weights. ViT-L/16 (1.2 GB): the exporter's save took 17.1 s
# inline against 8.5 s external, and onnx.load(load_external_data=False) 8.4 s against 1.5 ms;
# session creation is the same either way. Small models (DeiT-tiny, MobileViT) stay one file.
EXTERNAL_DATA_THRESHOLD = 64 * 2**20
MODEL_FILE = "model.onnx"
DATA_FILE = MODEL_FILE + ".data"
INPUT_NAME = "pixel_values"


class OnnxModelError(Exception):
    """An ONNX file that cannot be read or run: one line that names the file."""


class ExportCheckFailed(Exception):
    """The exported graph disagrees with PyTorch (cosine below the threshold) or will not run."""


@dataclass
class OnnxExport:
    """A checked export: the graph file, and everything about how it was made."""

    onnx_path: Path
    record: dict[str, Any] = field(default_factory=dict)

    @property
    def directory(self) -> Path:
        return self.onnx_path.parent

    @property
    def external_data(self) -> bool:
        return bool(self.record.get("external_data"))


# --------------------------------------------------------------------------- exporter choice


def dynamo_status() -> tuple[bool, str]:
    """Whether ``torch.onnx.export(dynamo=True)`` can be used here, and if not, why."""
    import inspect

    import torch

    if "dynamo" not in inspect.signature(torch.onnx.export).parameters:
        return False, f"torch {torch.__version__} has no dynamo ONNX exporter (needs torch >= 2.5)"
    try:
        import onnxscript  # noqa: F401
    except ImportError as exc:
        return False, f"the dynamo exporter needs onnxscript: {exc}"
    return True, ""


def optimum_status() -> str:
    """Why optimum's exporter is not the one used (recorded with every export)."""
    try:
        import optimum.exporters.onnx  # type: ignore[import-not-found]  # noqa: F401
    except ImportError as exc:
        return (
            f"not used: optimum.exporters.onnx is not importable here ({exc}); optimum-onnx 0.1.0 "
            "requires transformers < 4.58 and transformers 5 has no optimum.exporters.onnx"
        )
    return (
        "not used: importable, but the kit exports with torch.onnx on every stack so that one "
        "exporter (and its check) covers all 16 models"
    )


def choose_exporter(requested: str | None) -> str:
    """``dynamo`` or ``legacy``: the requested one (ValueError if it cannot run), else the best here."""
    if requested not in (None, "", "dynamo", "legacy"):
        raise ValueError(f"unknown exporter {requested!r}; valid: dynamo, legacy")
    ok, why = dynamo_status()
    if requested == "dynamo" and not ok:
        raise ValueError(why)
    if requested:
        return requested
    return "dynamo" if ok else "legacy"


def exporter_identity(exporter: str) -> dict[str, Any]:
    import torch

    ident: dict[str, Any] = {
        "exporter": f"torch.onnx.export(dynamo={exporter == 'dynamo'})",
        "exporter_kind": "dynamo (torch.export + onnxscript)" if exporter == "dynamo" else "TorchScript",
        "exporter_version": f"torch {torch.__version__}",
        "opset": DYNAMO_OPSET if exporter == "dynamo" else LEGACY_OPSET,
    }
    if exporter == "dynamo":
        import onnxscript

        ident["exporter_version"] += f", onnxscript {onnxscript.__version__}"
    return ident


# --------------------------------------------------------------------------- attention


def use_eager_attention(model: Any) -> str | None:
    """Switch a transformers model to eager attention in place; return what it now uses.

    transformers 5 (and late 4.x) have ``set_attn_implementation``; earlier 4.x read
    ``config._attn_implementation`` at forward time, so setting it on every config is enough.
    """
    config = getattr(model, "config", None)
    current = getattr(config, "_attn_implementation", None)
    if current in (None, "eager"):
        return current
    setter = getattr(model, "set_attn_implementation", None)
    if callable(setter):
        with contextlib.suppress(Exception):  # a version that refuses falls through to the config
            setter("eager")
    for module in model.modules():
        cfg = getattr(module, "config", None)
        if cfg is not None and getattr(cfg, "_attn_implementation", "eager") != "eager":
            with contextlib.suppress(AttributeError):
                cfg._attn_implementation = "eager"
    return getattr(model.config, "_attn_implementation", None)


# --------------------------------------------------------------------------- files


def onnx_files(onnx_path: str | os.PathLike[str]) -> list[Path]:
    """The graph file and the external data files it references (none for small models)."""
    onnx_path = Path(onnx_path)
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    proto = _load_proto(onnx_path, load_external_data=False)
    names: set[str] = set()
    for tensor in _all_initializers(proto.graph):
        if uses_external_data(tensor):
            names.add(ExternalDataInfo(tensor).location)
    return [onnx_path, *(onnx_path.parent / n for n in sorted(names))]


def onnx_file_bytes(onnx_path: str | os.PathLike[str]) -> int:
    """Bytes on disk of the graph plus its external data: what a deployment would ship."""
    return sum(p.stat().st_size for p in onnx_files(onnx_path))


def _all_initializers(graph: Any) -> list[Any]:
    tensors = list(graph.initializer)
    for node in graph.node:
        for attr in node.attribute:
            if attr.g is not None and attr.g.node:
                tensors.extend(_all_initializers(attr.g))
    return tensors


def initializer_bytes_by_dtype(onnx_path: str | os.PathLike[str]) -> dict[str, int]:
    """Bytes of every initializer by element type (from shapes, so external data is not read)."""
    from onnx import helper

    proto = _load_proto(onnx_path, load_external_data=False)
    out: dict[str, int] = {}
    for tensor in _all_initializers(proto.graph):
        np_dtype = helper.tensor_dtype_to_np_dtype(tensor.data_type)
        count = int(np.prod(tensor.dims)) if len(tensor.dims) else 1
        key = str(np_dtype)
        out[key] = out.get(key, 0) + count * np_dtype.itemsize
    return out


def _load_proto(onnx_path: str | os.PathLike[str], load_external_data: bool) -> Any:
    import onnx

    try:
        return onnx.load(str(onnx_path), load_external_data=load_external_data)
    except Exception as exc:  # protobuf DecodeError, OSError, onnx's own errors
        raise OnnxModelError(f"{onnx_path}: not a readable ONNX model ({one_line(exc)})") from None


def validate_onnx_file(onnx_path: str | os.PathLike[str]) -> None:
    """Raise `OnnxModelError` (one line naming the file) if it is missing, truncated or invalid."""
    import onnx

    path = Path(onnx_path)
    if not path.is_file():
        raise OnnxModelError(f"{path}: no such ONNX file")
    if path.stat().st_size == 0:
        raise OnnxModelError(f"{path}: empty file (truncated ONNX model)")
    _load_proto(path, load_external_data=False)
    try:
        # The path form reads external data lazily and works past 2 GiB.
        onnx.checker.check_model(str(path))
    except Exception as exc:
        raise OnnxModelError(f"{path}: invalid ONNX model ({one_line(exc)})") from None


def open_session(
    onnx_path: str | os.PathLike[str],
    options: Any,
    providers: list[Any],
) -> Any:
    """An ``InferenceSession`` on ``onnx_path``; `OnnxModelError` with one line if ORT can't load it."""
    import onnxruntime as ort

    path = Path(onnx_path)
    if not path.is_file():
        raise OnnxModelError(f"{path}: no such ONNX file")
    try:
        return ort.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:  # ORT's InvalidProtobuf / Fail / RuntimeException
        raise OnnxModelError(f"{path}: ONNX Runtime cannot load it ({one_line(exc)})") from None


# --------------------------------------------------------------------------- cache


def cache_key(spec: ModelSpec, fingerprint: str, identity: dict[str, Any], attn: str) -> str:
    payload = [spec.id, fingerprint, identity["exporter"], identity["exporter_version"], identity["opset"], attn]
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:20]


# --------------------------------------------------------------------------- export


def cached_model(entry: Path, make: Callable[[Path], dict[str, Any]]) -> tuple[Path, dict[str, Any]]:
    """``entry/model.onnx`` from the cache, or made now by ``make(target) -> record`` and cached
    (`kit.export.cache_entry.cached_entry`: the record says whether it was a hit, and why an entry
    that was there could not be used)."""
    directory, record = cached_entry(
        entry, lambda tmp: make(tmp / MODEL_FILE), lambda tmp: onnx_files(tmp / MODEL_FILE)
    )
    return directory / MODEL_FILE, record


def get_or_export(
    spec: ModelSpec,
    build_float_model: Callable[[], Any],
    cache_dir: str | os.PathLike[str],
    fingerprint: str,
    exporter: str | None = None,
) -> OnnxExport:
    """The checked ONNX export of ``spec``: from the cache, or exported, checked and cached now.

    Raises `ExportCheckFailed` when the export disagrees with PyTorch; ValueError for a bad
    ``exporter``. The record says whether this call hit the cache.
    """
    kind = choose_exporter(exporter)
    identity = exporter_identity(kind)
    entry = Path(cache_dir) / "onnx" / spec.id / cache_key(spec, fingerprint, identity, "eager")

    def make(target: Path) -> dict[str, Any]:
        from kit.models.build import example_inputs

        inputs = example_inputs(spec, CHECK_BATCH, seed=CHECK_SEED)
        record, expected = _export_model(spec, build_float_model, target, kind, inputs)
        gc.collect()  # the torch model is gone: the check session gets its memory
        record["check"] = check_export(target, inputs, expected)
        record["weights_fingerprint"] = fingerprint
        return record

    path, record = cached_model(entry, make)
    return OnnxExport(path, record)


def _export_model(
    spec: ModelSpec, build_float_model: Callable[[], Any], target: Path, kind: str, inputs: np.ndarray
) -> tuple[dict[str, Any], np.ndarray]:
    """Build, trace with eager attention, write ``target``; return the record and torch's output."""
    import torch

    from kit.models.build import primary_output_module

    started = time.perf_counter()
    model = build_float_model()
    attn_before = getattr(model.config, "_attn_implementation", None)
    attn = use_eager_attention(model)
    module = primary_output_module(model, spec)
    x = torch.from_numpy(inputs)
    with torch.no_grad():
        expected = module(x).float().numpy()
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    external = param_bytes > EXTERNAL_DATA_THRESHOLD
    record: dict[str, Any] = {"fallback_from": None}
    try:
        _run_exporter(module, x, target, kind, external)
    except Exception as exc:
        if kind != "dynamo":
            raise
        # The dynamo exporter still misses some graphs; the TorchScript one is the fallback.
        record["fallback_from"] = {"exporter": "dynamo", "error": one_line(exc)}
        kind = "legacy"
        shutil.rmtree(target.parent, ignore_errors=True)
        target.parent.mkdir(parents=True)
        _run_exporter(module, x, target, kind, external)
    del module, model
    record.update(exporter_identity(kind))
    record.update(
        {
            "model": spec.id,
            "attn_implementation_built": attn_before,
            "attn_implementation_exported": attn,
            "input_name": INPUT_NAME,
            "output_name": spec.primary_output,
            "dynamic_axes": {INPUT_NAME: {0: "batch"}},
            "external_data": external,
            "external_data_file": DATA_FILE if external else None,
            "param_bytes": param_bytes,
            "export_seconds": round(time.perf_counter() - started, 3),
            "optimum_exporter": optimum_status(),
        }
    )
    return record, expected


def _run_exporter(module: Any, x: Any, target: Path, kind: str, external: bool) -> None:
    if kind == "dynamo":
        _export_dynamo(module, x, target, external)
    else:
        _export_legacy(module, x, target, external)


def _export_dynamo(module: Any, x: Any, target: Path, external: bool) -> None:
    import warnings

    import torch

    batch = torch.export.Dim("batch", min=1, max=4096)
    # The exporter prints progress lines to stdout and logs a warning per missing torchvision
    # op; a cell's output should stay the kit's.
    with (
        contextlib.redirect_stdout(io.StringIO()),
        warnings.catch_warnings(),
        torch.no_grad(),
        _quiet_logger("torch.onnx"),
    ):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module,
            (x,),
            None,
            dynamo=True,
            opset_version=DYNAMO_OPSET,
            input_names=[INPUT_NAME],
            dynamic_shapes={INPUT_NAME: {0: batch}},
            optimize=True,
        )
        if program is None:
            raise RuntimeError("torch.onnx.export returned no program")
        contiguous_initializers(program)
        program.save(str(target), external_data=external)
    del program


def contiguous_initializers(program: Any) -> int:
    """Give every initializer held as a strided numpy view a C-contiguous copy; return how many.

    The exporter's constant folding leaves each Linear weight (on token inputs) as a transposed
    view, and ``ndarray.tofile`` writes a non-contiguous array element by element: ViT-B/16's
    save took 1.8 s, 0.6 s with copies, and its whole artifacts process 8.2 s against 7.3 s on
    the reference Xeon. The written bytes are the same (the values in row-major order either way)."""
    initializers = getattr(getattr(getattr(program, "model", None), "graph", None), "initializers", None)
    try:
        import onnx_ir as ir
    except ImportError:  # an exporter without onnx_ir (torch < 2.5) saves its own way
        return 0
    if initializers is None:
        return 0
    copied = 0
    for value in initializers.values():
        tensor = value.const_value
        raw = getattr(tensor, "raw", None)
        if isinstance(raw, np.ndarray) and not raw.flags.c_contiguous:
            value.const_value = ir.Tensor(np.ascontiguousarray(raw), name=tensor.name, doc_string=tensor.doc_string)
            copied += 1
    return copied


@contextlib.contextmanager
def _quiet_logger(name: str) -> Iterator[None]:
    import logging

    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _export_legacy(module: Any, x: Any, target: Path, external: bool) -> None:
    import inspect
    import warnings

    import torch

    kwargs: dict[str, Any] = {}
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False
    # The TorchScript exporter writes one external file per tensor (ViT-H/14: ~200 files);
    # export into a scratch directory, then re-save with all tensors in one file.
    scratch = target.parent / "legacy-scratch"
    scratch.mkdir(exist_ok=True)
    raw = scratch / MODEL_FILE
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (x,),
            str(raw),
            opset_version=LEGACY_OPSET,
            input_names=[INPUT_NAME],
            output_names=["output"],
            dynamic_axes={INPUT_NAME: {0: "batch"}, "output": {0: "batch"}},
            do_constant_folding=True,
            **kwargs,
        )
    _resave(raw, target, external)
    shutil.rmtree(scratch, ignore_errors=True)


def _resave(source: Path, target: Path, external: bool) -> None:
    import onnx

    save_onnx(onnx.load(str(source), load_external_data=True), target, external, location=DATA_FILE)


def save_onnx(proto: Any, target: Path, external: bool, location: str | None = None) -> None:
    """Save a model proto; ``external``: its tensors in one data file beside it (``location``,
    default ``<name>.data``), as every model over ``EXTERNAL_DATA_THRESHOLD`` is kept."""
    import onnx

    if external:
        onnx.save_model(
            proto,
            str(target),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=location or target.name + ".data",
            size_threshold=1024,
        )
    else:
        onnx.save_model(proto, str(target))


# --------------------------------------------------------------------------- check


def check_export(onnx_path: Path, inputs: np.ndarray, expected: np.ndarray) -> dict[str, Any]:
    """Run the export with ORT (CPU, the kit's session options) and compare with PyTorch."""
    from kit.export.ort_runtime import session_options

    options = session_options(record_assignment=False)
    try:
        session = open_session(onnx_path, options, ["CPUExecutionProvider"])
        got = session.run(None, {session.get_inputs()[0].name: inputs})[0]
    except OnnxModelError as exc:
        raise ExportCheckFailed(f"export check: {exc}") from None
    except Exception as exc:  # ORT runtime error on the exported graph
        raise ExportCheckFailed(f"export check: {onnx_path} fails to run in ONNX Runtime: {one_line(exc)}") from None
    del session
    result = compare(expected, got)
    result.update(
        {
            "threshold_cosine": EXPORT_CHECK_COSINE,
            "inputs": f"{inputs.shape[0]} seeded synthetic images (seed {CHECK_SEED}), model normalisation",
            "reference": "the same PyTorch FP32 module on CPU, eager attention",
            "runtime": "onnxruntime CPUExecutionProvider, ORT_ENABLE_ALL",
        }
    )
    if not result["finite"] or result["cosine"] < EXPORT_CHECK_COSINE:
        raise ExportCheckFailed(
            f"export of {onnx_path} disagrees with PyTorch: cosine {result['cosine']:.6f} < "
            f"{EXPORT_CHECK_COSINE} (max abs error {result['max_abs_error']:.3g}, finite={result['finite']})"
        )
    return result


def run_on_cpu(onnx_path: str | os.PathLike[str], pixels: np.ndarray) -> np.ndarray:
    """The graph's first output on ``pixels`` (float32) with ORT's CPU provider and the kit's
    session options; `OnnxModelError` if ORT cannot load it."""
    from kit.export.ort_runtime import session_options

    session = open_session(onnx_path, session_options(record_assignment=False), ["CPUExecutionProvider"])
    out = session.run(None, {session.get_inputs()[0].name: np.ascontiguousarray(pixels, dtype=np.float32)})[0]
    return np.asarray(out, dtype=np.float32)


def compare(expected: np.ndarray, got: np.ndarray) -> dict[str, Any]:
    """Cosine (flattened, float64), max abs error and finiteness of ``got`` against ``expected``."""
    a = np.asarray(expected, dtype=np.float64).ravel()
    b = np.asarray(got, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ExportCheckFailed(f"export output has {b.size} values, PyTorch {a.size}")
    finite = bool(np.isfinite(b).all())
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    cosine = float(a @ b / denom) if denom > 0 and finite else 0.0
    return {
        "cosine": cosine,
        "max_abs_error": float(np.max(np.abs(a - b))) if finite else float("inf"),
        "finite": finite,
    }
