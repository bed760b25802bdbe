"""ONNX export, the ORT paths and their quantizers, on tiny models of every family and one
full-size model.

Fidelity thresholds (cosine of the primary output against PyTorch FP32 on 4 seeded images):

* export and ``ort-fp32``: >= 0.9999, the export check's own threshold (FP32 kernels differ only
  in summation order: observed >= 0.99999999 on every tiny model).
* INT8 on the *tiny* models: >= 0.95. Their matmuls have inner dimensions of 32-64, so per-tensor
  activation rounding error averages over ~4x fewer terms than at full size; observed 0.999+
  for the transformer families and 0.971 for tiny MobileViT's static QDQ (its 64-feature pooled
  classifier input). A broken quantization (wrong scale, zero point, zeroed output) lands far
  below 0.9, which is what these tests are for.
* INT8 on the full-size model (DeiT-Tiny, 224 px): >= 0.995 for both methods, the study's target
  for static QDQ, and the INT8 file <= 0.32x the FP32 file. DeiT-Tiny's matrices are small, so
  what stays FP32 weighs: 5.5 MB of int8 weights, 0.8 MB of FP32 (patch conv 0.6 MB, position
  embeddings, norms, biases) and ~0.9 MB of graph (QDQ adds nodes) against a 23.6 MB FP32 file:
  observed 0.295 dynamic, 0.308 static. ViT-B/16's larger matrices bring it to ~0.26.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from support.prepare import prepare_context, torch_output  # noqa: E402

from kit.errors import BadInput  # noqa: E402
from kit.export.onnx_export import (  # noqa: E402
    EXPORT_CHECK_COSINE,
    MODEL_FILE,
    OnnxModelError,
    cached_model,
    get_or_export,
    open_session,
    validate_onnx_file,
)
from kit.export.ort_runtime import probe_provider, resolve_provider, session_options  # noqa: E402
from kit.measure.fidelity import compare_outputs  # noqa: E402
from kit.models.build import build_model, example_inputs, weights_fingerprint  # noqa: E402
from kit.models.tiny import TINY_FAMILIES, tiny_spec  # noqa: E402
from kit.paths import onnxruntime as onnxruntime_paths  # noqa: E402
from kit.paths.base import PathFailed, PathUnavailable, check_path_options, get_path  # noqa: E402
from kit.paths.onnxruntime import OrtOptions  # noqa: E402
from kit.quantize import ort_quant  # noqa: E402

FP32_COSINE = EXPORT_CHECK_COSINE
TINY_INT8_COSINE = 0.95
FULL_INT8_COSINE = 0.995
FULL_INT8_SIZE_RATIO = 0.32
ORT_PATHS = ("ort-fp32", "ort-int8-dynamic", "ort-int8-static-qdq")
CUDA_EP_HERE = "CUDAExecutionProvider" in ort.get_available_providers()


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx-cache")


# --------------------------------------------------------------------------- every family


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_each_family_exports_and_every_ort_path_agrees_with_pytorch(
    family: str, cache_dir: Path, tmp_path: Path
) -> None:
    spec = tiny_spec(family)
    pixels = example_inputs(spec, 4, seed=1235)
    reference = torch_output(spec, pixels)
    for name in ORT_PATHS:
        prepared = get_path(name).prepare(prepare_context(spec, cache_dir, tmp_path))
        try:
            fidelity = compare_outputs(reference, prepared.run(pixels), classifier=spec.head == "classifier")
            timed = prepared.make_timed_call(example_inputs(spec, 1, seed=1234))
            timed()
        finally:
            prepared.close()
        details = prepared.details
        floor = FP32_COSINE if name == "ort-fp32" else TINY_INT8_COSINE
        assert fidelity["finite"], name
        assert fidelity["cosine"] >= floor, (name, fidelity)
        # What ran is recorded: the provider ORT kept, the session, the exporter and its check.
        assert details["execution_provider"] == "CPUExecutionProvider"
        assert details["session_providers"] == ["CPUExecutionProvider"]
        assert details["session_options"]["intra_op_num_threads"] >= 1
        assert details["session_options"]["graph_optimization_level"] == "ORT_ENABLE_ALL"
        export = details["export"]
        assert export["exporter"].startswith("torch.onnx.export") and export["opset"] >= 17
        assert export["check"]["cosine"] >= EXPORT_CHECK_COSINE and export["check"]["max_abs_error"] >= 0
        assert export["attn_implementation_exported"] in ("eager", None)
        assert prepared.serialized_bytes and prepared.serialized_bytes > 0
        if name != "ort-fp32":
            quant = details["quantization"]
            assert quant["weight_type"] == "QInt8" and "per_channel" in quant and "reduce_range" in quant
            assert quant["op_types_quantized"] == ["MatMul", "Gemm"]
            assert details["model_file_bytes"] < details["fp32_file_bytes"]
        if name == "ort-int8-static-qdq":
            calibration = details["quantization"]["calibration"]
            assert calibration["source"] == "synthetic" and calibration["samples"] == 8
            assert details["quantization"]["calibration_method"] == "MinMax"


def test_export_cache_is_hit_the_second_time(cache_dir: Path) -> None:
    spec = tiny_spec("vit")
    fingerprint = weights_fingerprint(spec, "random", 0)
    first = get_or_export(spec, lambda: build_model(spec, "random", 0)[0], cache_dir, fingerprint)

    def must_not_build() -> Any:
        raise AssertionError("a cache hit must not build the model again")

    second = get_or_export(spec, must_not_build, cache_dir, fingerprint)
    assert second.record["cache_hit"] is True
    assert second.onnx_path == first.onnx_path
    assert second.record["check"] == first.record["check"]


def test_external_data_layout_exports_runs_and_converts_to_fp16(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Models above EXTERNAL_DATA_THRESHOLD (64 MiB: every full-size model but the smallest) keep
    # their weights in one .data file; tiny-vit is pushed over it here.
    import kit.export.onnx_export as onnx_export
    from kit.export.onnx_export import initializer_bytes_by_dtype, onnx_files
    from kit.paths.onnxruntime import convert_fp16

    spec = tiny_spec("vit")
    fingerprint = weights_fingerprint(spec, "random", 0)
    inline = get_or_export(spec, lambda: build_model(spec, "random", 0)[0], tmp_path / "inline", fingerprint)
    monkeypatch.setattr(onnx_export, "EXTERNAL_DATA_THRESHOLD", 0)
    external = get_or_export(spec, lambda: build_model(spec, "random", 0)[0], tmp_path / "external", fingerprint)
    assert inline.record["external_data"] is False and external.record["external_data"] is True
    files = onnx_files(external.onnx_path)
    assert [p.name for p in files] == ["model.onnx", "model.onnx.data"] and all(p.is_file() for p in files)
    assert initializer_bytes_by_dtype(external.onnx_path) == initializer_bytes_by_dtype(inline.onnx_path)
    pixels = example_inputs(spec, 2, seed=5)
    sessions = [ort.InferenceSession(str(e.onnx_path), providers=["CPUExecutionProvider"]) for e in (inline, external)]
    outputs = [session.run(None, {"pixel_values": pixels})[0] for session in sessions]
    np.testing.assert_allclose(outputs[1], outputs[0], rtol=1e-5, atol=1e-5)
    half = tmp_path / "fp16" / "model.onnx"
    half.parent.mkdir()
    convert_fp16(external.onnx_path, half, external=True)
    assert [p.name for p in onnx_files(half)] == ["model.onnx", "model.onnx.data"]
    by_dtype = initializer_bytes_by_dtype(half)
    assert by_dtype.get("float16", 0) > 0.9 * sum(by_dtype.values())
    # The converter appends its input Casts out of topological order (onnx.checker refuses the
    # graph); ORT sorts on load. Its CPU provider runs the graph here, as the CUDA provider would.
    out16 = ort.InferenceSession(str(half), providers=["CPUExecutionProvider"]).run(None, {"pixel_values": pixels})[0]
    assert out16.dtype == np.float32  # keep_io_types
    assert compare_outputs(outputs[0], out16, classifier=True)["cosine"] >= 0.999


# --------------------------------------------------------------------------- bad files


def _tiny_onnx(target: Path) -> dict[str, Any]:
    from kit.export.ort_runtime import _probe_model_bytes

    target.write_bytes(_probe_model_bytes())
    return {"made": "probe graph"}


def test_a_truncated_cache_entry_is_made_again_and_says_why(tmp_path: Path) -> None:
    entry = tmp_path / "entry"
    path, record = cached_model(entry, _tiny_onnx)
    assert record["cache_hit"] is False
    assert cached_model(entry, _tiny_onnx)[1]["cache_hit"] is True
    path.write_bytes(path.read_bytes()[:10])  # truncated copy
    path2, record2 = cached_model(entry, _tiny_onnx)
    assert record2["cache_hit"] is False
    assert "truncated" in record2["cache_note"] and str(path) in record2["cache_note"]
    validate_onnx_file(path2)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_a_corrupt_or_truncated_onnx_file_gives_one_line_naming_it(damage: str, tmp_path: Path) -> None:
    good = tmp_path / "good.onnx"
    _tiny_onnx(good)
    bad = tmp_path / f"{damage}.onnx"
    data = good.read_bytes()
    bad.write_bytes(
        {"garbage": b"\x08\xff\xff\xff not protobuf \n at all", "truncated": data[: len(data) // 2], "empty": b""}[
            damage
        ]
    )
    calls = (lambda: validate_onnx_file(bad), lambda: open_session(bad, session_options(1), ["CPUExecutionProvider"]))
    for call in calls:
        with pytest.raises(OnnxModelError) as info:
            call()
        message = str(info.value)
        assert "\n" not in message and str(bad) in message


def test_a_corrupt_cached_model_fails_the_cell_with_one_line(cache_dir: Path, tmp_path: Path) -> None:
    spec = tiny_spec("vit")
    private = tmp_path / "cache"
    shutil.copytree(cache_dir, private)
    prepared = get_path("ort-int8-dynamic").prepare(prepare_context(spec, private, tmp_path))
    model_file = Path(prepared.details["model_file"])
    prepared.close()
    size = model_file.stat().st_size
    model_file.write_bytes(b"\x00" * size)  # same size: only loading it can tell
    with pytest.raises(PathFailed) as info:
        get_path("ort-int8-dynamic").prepare(prepare_context(spec, private, tmp_path))
    assert "\n" not in str(info.value) and str(model_file) in str(info.value)


# --------------------------------------------------------------------------- providers


def test_the_cpu_provider_is_kept_by_a_real_session() -> None:
    assert probe_provider("CPUExecutionProvider") == (True, "")


def test_provider_option_is_checked_against_the_device() -> None:
    assert resolve_provider("cpu", None) == "CPUExecutionProvider"
    assert resolve_provider("cuda", None) == "CUDAExecutionProvider"
    assert resolve_provider("cuda", "tensorrt") == "TensorrtExecutionProvider"
    with pytest.raises(ValueError, match="does not run on device cpu"):
        resolve_provider("cpu", "tensorrt")
    with pytest.raises(ValueError, match="unknown ONNX Runtime provider"):
        resolve_provider("cuda", "rocm-ish")


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ({"provider": "rocm-ish"}, "path option provider='rocm-ish': unknown ONNX Runtime provider"),
        ({"calibration_method": "Median"}, "calibration_method='Median': expected one of MinMax, Entropy, Percentile"),
        ({"calibration_samples": 0}, "calibration_samples=0: expected >= 1"),
        ({"calibration_samples": "many"}, "path option calibration_samples='many'"),
        ({"static_activation_type": "QInt4"}, "static_activation_type='QInt4': expected one of QInt8, QUInt8"),
        ({"dynamic_weight_type": "int8"}, "dynamic_weight_type='int8': expected one of QInt8, QUInt8"),
        ({"exporter": "jit"}, "exporter='jit': expected one of dynamo, legacy"),
        ({"trt_fp16": "sometimes"}, "path option trt_fp16='sometimes'"),
        ({"intra_op_threads": 0}, "intra_op_threads=0: expected >= 1"),
        ({"calibration_sampels": 4}, "unknown path option 'calibration_sampels'.*did you mean 'calibration_samples'"),
    ],
)
def test_bad_options_are_refused_at_plan_time(raw: dict[str, Any], needle: str) -> None:
    # Before: a bad value was a skipped cell per cell and an unknown key was silently ignored.
    with pytest.raises(BadInput, match=needle):
        check_path_options(["ort-fp32", "ort-int8-static-qdq"], raw)


def test_options_are_typed_from_command_line_spellings() -> None:
    opts = OrtOptions.from_raw(
        {"provider": "tensorrt", "calibration_samples": "2", "static_op_types": "MatMul,Gemm", "trt_fp16": "off"}
    )
    assert opts.provider == "tensorrt" and opts.calibration_samples == 2 and opts.trt_fp16 is False
    assert opts.static_op_types == ("MatMul", "Gemm")
    assert OrtOptions.from_raw({"bnb.compute_dtype": "x"}) == OrtOptions()  # another family's key: not read
    # The defaults kept beside the options match the quantizer's own.
    assert OrtOptions().calibration_samples == ort_quant.DEFAULT_CALIBRATION_SAMPLES
    assert onnxruntime_paths.CALIBRATION_METHODS == ort_quant.CALIBRATION_METHODS
    assert onnxruntime_paths.QUANT_TYPES == ort_quant.QUANT_TYPES


def test_tensorrt_asked_on_cpu_is_a_skipped_cell(tmp_path: Path) -> None:
    with pytest.raises(PathUnavailable, match="does not run on device cpu"):
        get_path("ort-fp32").prepare(prepare_context(tiny_spec("vit"), tmp_path, tmp_path, provider="tensorrt"))


@pytest.mark.skipif(CUDA_EP_HERE, reason="this onnxruntime has the CUDA provider")
@pytest.mark.parametrize("name", ["ort-fp32", "ort-fp16", "ort-int8-static-qdq"])
def test_cuda_provider_on_a_cpu_only_machine_is_skipped_with_the_reason(name: str, tmp_path: Path) -> None:
    from kit.results.store import Cell
    from kit.run.cell import RunOptions, measure_cell

    path = get_path(name)
    ok, why = path.available("cuda")
    assert not ok and "CUDAExecutionProvider" in why
    with pytest.raises(PathUnavailable, match="CUDAExecutionProvider"):
        path.prepare(prepare_context(tiny_spec("vit"), tmp_path, tmp_path, device="cuda"))
    doc = measure_cell(Cell("tiny-vit", name, "cuda", 1), RunOptions(out_dir=str(tmp_path), profile="quick"))
    assert doc["status"] == "skipped" and "CUDAExecutionProvider" in doc["reason"]


def test_paths_that_have_no_kernels_on_a_device_say_so() -> None:
    ok, why = get_path("ort-fp16").available("cpu")
    assert not ok and "FP16" in why
    ok, why = get_path("ort-int8-dynamic").available("cuda")
    assert not ok and "CPU provider only" in why


# --------------------------------------------------------------------------- calibration


def test_static_qdq_calibrates_on_an_image_folder_and_records_it(cache_dir: Path, tmp_path: Path) -> None:
    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(images / f"{i}.png")
    spec = tiny_spec("vit")
    prepared = get_path("ort-int8-static-qdq").prepare(
        prepare_context(spec, cache_dir, tmp_path, calibration_dir=str(images), calibration_samples="2")
    )
    prepared.close()
    calibration = prepared.details["quantization"]["calibration"]
    assert calibration["source"] == "image folder" and calibration["samples"] == 2
    assert calibration["directory"] == str(images.resolve())
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(PathUnavailable, match="holds no images"):
        get_path("ort-int8-static-qdq").prepare(prepare_context(spec, cache_dir, tmp_path, calibration_dir=str(empty)))


# --------------------------------------------------------------------------- full size


def test_a_full_size_model_through_the_runner(tmp_path: Path) -> None:
    """DeiT-Tiny (5.7M parameters, 224 px): export, both INT8 methods, measured as cells."""
    from kit.results.store import load_results
    from kit.run.cell import RunOptions
    from kit.run.executors import InlineExecutor
    from kit.run.reproduce import plan_matrix, reproduce

    model = "deit-tiny-ultra-efficient"
    cells = plan_matrix([model], list(ORT_PATHS), ["cpu"], [1])
    summary = reproduce(cells, RunOptions(out_dir=str(tmp_path), profile="quick"), InlineExecutor())
    docs = {d["cell"]["path"]: d for d in load_results(tmp_path).docs}
    assert summary.ok == 3, {k: d["reason"] for k, d in docs.items()}
    fp32 = docs["ort-fp32"]
    assert fp32["fidelity"]["cosine"] >= FP32_COSINE
    assert fp32["path_info"]["export"]["external_data"] is False
    for name in ("ort-int8-dynamic", "ort-int8-static-qdq"):
        doc = docs[name]
        assert doc["fidelity"]["cosine"] >= FULL_INT8_COSINE, (name, doc["fidelity"])
        assert doc["fidelity"]["finite"]
        ratio = doc["size"]["bytes"] / fp32["size"]["bytes"]
        assert ratio <= FULL_INT8_SIZE_RATIO, (name, ratio)
        assert doc["path_info"]["execution_provider"] == "CPUExecutionProvider"
        assert doc["path_info"]["made_in_this_cell"]["export"] is False  # ort-fp32 exported it
    assert os.path.isdir(tmp_path / "_cache" / "onnx" / model)
    assert (Path(fp32["path_info"]["model_file"]).name) == MODEL_FILE


def test_transposed_initializers_are_saved_contiguous_with_the_same_values(tmp_path: Path) -> None:
    # On 3-d inputs (tokens) the exporter folds each Linear weight into a transposed numpy view, which ndarray.tofile
    # writes element by element (ViT-B/16: 1.8 s of save against 0.6 s); the kit copies them first.
    import torch

    from kit.export.onnx_export import contiguous_initializers

    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(48, 32), torch.nn.GELU(), torch.nn.Linear(32, 8)).eval()
    with torch.no_grad():
        program = torch.onnx.export(module, (torch.randn(1, 4, 48),), None, dynamo=True, optimize=True)
    inits = program.model.graph.initializers.values()
    strided = [v.name for v in inits if isinstance(getattr(v.const_value, "raw", None), np.ndarray)]
    before = {v.name: np.array(v.const_value.numpy()) for v in inits}
    assert contiguous_initializers(program) >= 1 and strided  # the fold did leave views
    for value in program.model.graph.initializers.values():
        raw = getattr(value.const_value, "raw", None)
        assert not isinstance(raw, np.ndarray) or raw.flags.c_contiguous
    program.save(str(tmp_path / "m.onnx"), external_data=True)
    saved = onnx.load(str(tmp_path / "m.onnx"), load_external_data=True)
    from onnx import numpy_helper

    after = {t.name: numpy_helper.to_array(t) for t in saved.graph.initializer}
    assert after.keys() == before.keys()
    for name, value in before.items():
        np.testing.assert_array_equal(after[name], value)
    x = np.random.default_rng(0).standard_normal((1, 4, 48)).astype(np.float32)
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    out = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(out, module(torch.from_numpy(x)).detach().numpy(), rtol=1e-5, atol=1e-5)


def test_quantizers_write_their_scratch_files_away_from_the_shared_export(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ORT's quantizers write <model>-inferred.onnx beside the model they are given and delete it:
    # two of them on one export at once (tried: dynamic and static side by side; two Ray workers) deleted
    # each other's file. Each now works on a copy in a scratch directory of its own.
    import onnx.shape_inference

    import kit.export.onnx_export as onnx_export
    from kit.quantize.ort_quant import DynamicSettings, quantize_dynamic_file

    spec = tiny_spec("vit")
    monkeypatch.setattr(onnx_export, "EXTERNAL_DATA_THRESHOLD", 0)
    export = get_or_export(spec, lambda: build_model(spec, "random", 0)[0], tmp_path / "cache", "random-0")
    before = sorted(p.name for p in export.onnx_path.parent.iterdir())
    written: list[Path] = []
    infer = onnx.shape_inference.infer_shapes_path

    def recording(src: str, dst: str = "", *args: Any, **kwargs: Any) -> Any:
        written.append(Path(dst))
        return infer(src, dst, *args, **kwargs)

    monkeypatch.setattr(onnx.shape_inference, "infer_shapes_path", recording)
    out = tmp_path / "q" / "model.onnx"
    out.parent.mkdir()
    quantize_dynamic_file(export.onnx_path, out, DynamicSettings(), external_data=True)
    assert written and all(p.parent != export.onnx_path.parent for p in written)
    assert sorted(p.name for p in export.onnx_path.parent.iterdir()) == before  # the export untouched
    assert sorted(p.name for p in out.parent.iterdir()) == ["model.onnx", "model.onnx.data"]  # no scratch left
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = example_inputs(spec, 1, seed=0)
    assert np.isfinite(sess.run(None, {sess.get_inputs()[0].name: x})[0]).all()
