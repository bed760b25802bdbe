"""bitsandbytes paths: proof that the method ran, its failure modes, fidelity against FP32.

CPU tests need bitsandbytes with a CPU backend (0.46+; the kit pins 0.50): where it has none they
skip with the path's own reason. ``cuda``-marked tests skip without a CUDA device (conftest.py).

Fidelity thresholds (cosine of the flattened outputs against FP32 on the same seeded weights and
8 seeded images; observed on bitsandbytes 0.50.2 / transformers 5.23 / this CPU in brackets):
  LLM.int8  >= 0.999   [0.9996-0.9998]  per-row >= 0.995
  NF4       >= 0.95    [0.971-0.984]    per-row >= 0.90
  FP4       >= 0.92    [0.948-0.978]
Top-1 agreement is not asserted: random-weight logits are nearly flat, so arg-max flips are noise.
"""

from __future__ import annotations

import dataclasses
import json
import types
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from kit.errors import BadInput  # noqa: E402
from kit.measure.fidelity import compare_outputs  # noqa: E402
from kit.models.build import build_model, example_inputs, output_of  # noqa: E402
from kit.models.tiny import tiny_spec  # noqa: E402
from kit.paths import bnb_support  # noqa: E402
from kit.paths.base import PathFailed, PrepareContext, check_path_options, get_path  # noqa: E402
from kit.paths.bnb import BnbOptions  # noqa: E402

INT8_MIN_COSINE = 0.999
INT8_MIN_ROW_COSINE = 0.995
NF4_MIN_COSINE = 0.95
NF4_MIN_ROW_COSINE = 0.90
FP4_MIN_COSINE = 0.92


def _require(path_name: str, device: str = "cpu") -> Any:
    path = get_path(path_name)
    ok, why = path.available(device)
    if not ok:
        pytest.skip(f"{path_name} on {device}: {why}")
    return path


def small_vit() -> Any:
    """tiny-vit widened to 128 so every Linear fits bitsandbytes' fused CPU 4-bit kernel."""
    base = tiny_spec("vit")
    config = {**base.config, "hidden_size": 128, "num_attention_heads": 4, "intermediate_size": 256}
    return dataclasses.replace(base, id="small-vit", config=config, real_params=0)


def context(
    path_name: str, spec: Any, tmp_path: Any, device: str = "cpu", options: dict[str, Any] | None = None
) -> PrepareContext:
    work = tmp_path / f"{path_name}-{spec.id}-{device}"
    work.mkdir(parents=True, exist_ok=True)
    return PrepareContext(
        spec=spec,
        device=device,
        batch_size=1,
        build_float_model=lambda: build_model(spec, weights="random", seed=0)[0],
        work_dir=str(work),
        cache_dir=str(tmp_path),
        weights_fingerprint="random-0",
        options=dict(options or {}),
    )


def prepare(
    path_name: str, spec: Any, tmp_path: Any, device: str = "cpu", options: dict[str, Any] | None = None
) -> Any:
    path = _require(path_name, device)
    return path.prepare(context(path_name, spec, tmp_path, device, options))


_REFERENCES: dict[tuple[str, int], np.ndarray] = {}


def reference(spec: Any, images: np.ndarray) -> np.ndarray:
    """FP32 output of the seed-0 random build of ``spec`` (cached per spec and image count)."""
    key = (spec.id, images.shape[0])
    if key not in _REFERENCES:
        model, _ = build_model(spec, weights="random", seed=0)
        with torch.inference_mode():
            _REFERENCES[key] = output_of(model, spec, torch.from_numpy(images)).float().numpy()
    return _REFERENCES[key]


def fidelity(spec: Any, prepared: Any, n: int = 8) -> dict[str, Any]:
    images = example_inputs(spec, n, seed=1)
    return compare_outputs(reference(spec, images), prepared.run(images), classifier=spec.head == "classifier")


# --------------------------------------------------------------------------------- proof


def test_int8_replaces_every_linear_but_the_head(tmp_path: Any) -> None:
    spec = tiny_spec("vit")
    prepared = prepare("bnb-int8", spec, tmp_path)
    d = prepared.details
    proof = d["proof"]
    # tiny-vit: 2 blocks x (q, k, v, o, fc1, fc2) = 12 Linears + the classifier.
    assert proof["linear_layers_in_float_model"] == 13
    assert proof["replaced_linear_layers"] == 12
    assert proof["replaced_int8_layers"] == 12 and proof["replaced_4bit_layers"] == 0
    assert proof["replaced_by_class"] == {"Linear8bitLt": 12}
    assert proof["float_linear_layers_left"] == 1
    assert proof["float_linear_modules"] == ["classifier"]
    assert proof["int8_thresholds_in_layers"] == [6.0]
    assert d["settings"]["llm_int8_threshold"] == 6.0
    assert d["settings"]["skip_modules_passed"] == ["classifier"]
    # Bytes: int8 weights and fp32 row scales are counted; the ratio is stated against its limit.
    by_dtype = prepared.weight_bytes_by_dtype
    assert by_dtype["int8"] > 0 and prepared.weight_bytes == sum(by_dtype.values())
    ratio = proof["replaced_weight_bytes"]["ratio_vs_fp32"]
    assert 0.25 < ratio <= proof["layer_ratio_limit"] == 0.30
    assert proof["weight_bytes"] < proof["float_model_weight_bytes"]
    assert prepared.serialized_bytes and prepared.serialized_bytes > 0
    assert d["device_map"] == {"": "cpu"}
    assert d["bitsandbytes_version"] == bnb_support.bnb_version()
    prepared.close()


def test_the_fp32_source_is_saved_once_per_run_and_shared_by_every_bnb_path(tmp_path: Any) -> None:
    from kit.paths.bnb import fp32_source_entry

    spec = tiny_spec("vit")
    int8, nf4 = _require("bnb-int8"), _require("bnb-nf4")
    ctx = context("bnb-int8", spec, tmp_path)
    made = int8.prepare_artifacts(ctx)
    entry = fp32_source_entry(ctx)
    assert made is not None and made["cache_hit"] is False and made["cache_entry"] == str(entry)
    assert {"config.json", "model.safetensors"} <= set(json.loads((entry / "meta.json").read_text())["files"])
    stamp = (entry / "model.safetensors").stat().st_mtime_ns

    def no_build() -> Any:
        raise AssertionError("a cache hit must not build the float model")

    hit = nf4.prepare_artifacts(dataclasses.replace(context("bnb-nf4", spec, tmp_path), build_float_model=no_build))
    assert hit is not None and hit["cache_hit"] is True
    prepared = int8.prepare(ctx)  # the measured process loads the entry, and does not save again
    assert f"run's cache ({entry}, made by an earlier process" in prepared.details["quantized_from"]
    assert (entry / "model.safetensors").stat().st_mtime_ns == stamp
    prepared.close()
    # A model loaded from a local directory is quantized from that directory: nothing to cache.
    assert int8.prepare_artifacts(dataclasses.replace(ctx, weights_fingerprint="directory-0")) is None


def test_a_cache_that_cannot_keep_the_fp32_source_costs_the_save_not_the_cell(tmp_path: Any) -> None:
    spec = tiny_spec("vit")
    path = _require("bnb-int8")
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")
    ctx = dataclasses.replace(context("bnb-int8", spec, tmp_path), cache_dir=str(blocked))
    prepared = path.prepare(ctx)
    assert "cell's scratch dir: the run's cache could not keep it" in prepared.details["quantized_from"]
    assert prepared.details["proof"]["replaced_int8_layers"] == 12
    prepared.close()


def test_nf4_replaces_with_4bit_layers_and_records_settings(tmp_path: Any) -> None:
    spec = small_vit()
    prepared = prepare("bnb-nf4", spec, tmp_path)
    d = prepared.details
    proof = d["proof"]
    assert proof["replaced_4bit_layers"] == 12 and proof["replaced_int8_layers"] == 0
    assert proof["quant_types"] == ["nf4"]
    assert proof["float_linear_modules"] == ["classifier"]
    assert d["settings"]["compute_dtype"] == "bfloat16"  # CPU default, justified in the source
    assert d["settings"]["double_quant"] is False
    assert proof["double_quant_in_layers"] == [False]
    assert proof["compute_dtypes_in_layers"] == ["bfloat16"]
    assert proof["replaced_weight_bytes"]["ratio_vs_fp32"] <= 0.17
    assert prepared.weight_bytes_by_dtype["uint8"] > 0
    assert d["settings"]["compute_dtype_source"].startswith("default on cpu: bfloat16")
    prepared.close()


def test_options_override_threshold_skip_modules_and_double_quant(tmp_path: Any) -> None:
    spec = small_vit()
    int8 = prepare("bnb-int8", spec, tmp_path, options={"bnb.llm_int8_threshold": 4.0, "bnb.skip_modules": []})
    assert int8.details["proof"]["int8_thresholds_in_layers"] == [4.0]
    assert int8.details["settings"]["llm_int8_threshold_source"] == "option"
    assert int8.details["proof"]["float_linear_layers_left"] == 0  # the classifier too
    nf4 = prepare("bnb-nf4", spec, tmp_path, options={"bnb.double_quant": True})
    assert nf4.details["proof"]["double_quant_in_layers"] == [True]
    assert nf4.details["settings"]["double_quant_source"] == "option"


def test_skipping_every_module_is_a_failed_cell(tmp_path: Any) -> None:
    spec = tiny_spec("vit")
    with pytest.raises(PathFailed, match=r"0 of 13 Linear layers were replaced.*did not run"):
        prepare("bnb-int8", spec, tmp_path, options={"bnb.skip_modules": ["vit", "classifier"]})


def test_unknown_option_is_refused_at_plan_time() -> None:
    # Checked in the parent before any cell starts (kit.paths.base.check_path_options), with a
    # suggestion; no cell is measured, failed or skipped for it.
    with pytest.raises(BadInput, match=r"unknown path option 'bnb.treshold'.*did you mean 'bnb.llm_int8_threshold'"):
        check_path_options(["bnb-int8"], {"bnb.treshold": 5})


@pytest.mark.parametrize(
    ("key", "value", "needle"),
    [
        ("bnb.compute_dtype", "int3", "expected one of float32, float16, bfloat16"),
        ("bnb.float_dtype", 7, "expected one of float32, float16, bfloat16"),
        ("bnb.double_quant", "maybe", "expected true or false"),
        ("bnb.llm_int8_threshold", "high", "expected a number"),
        ("bnb.llm_int8_threshold", -1, "expected a number >= 0"),
        ("bnb.skip_modules", 3, "expected a list of names"),
    ],
)
def test_bad_option_values_are_refused_at_plan_time(key: str, value: Any, needle: str) -> None:
    with pytest.raises(BadInput, match=f"path option {key}=.*{needle}"):
        check_path_options(["bnb-nf4"], {key: value})


def test_options_are_typed_with_the_spellings_of_the_command_line() -> None:
    opts = BnbOptions.from_raw(
        {
            "bnb.compute_dtype": "bf16",
            "bnb.double_quant": "yes",
            "bnb.skip_modules": "classifier, pooler",
            "provider": "x",
        }
    )
    assert opts == BnbOptions(compute_dtype="bfloat16", double_quant=True, skip_modules=("classifier", "pooler"))
    assert BnbOptions.from_raw({"bnb.skip_modules": []}).skip_modules == ()
    assert BnbOptions.from_raw({"bnb.skip_modules": ""}).skip_modules == ()  # --option bnb.skip_modules=
    assert BnbOptions.from_raw({}) == BnbOptions()  # None: the device's default, chosen in prepare


def test_heads_are_found_per_architecture() -> None:
    from kit.paths.bnb import head_modules

    deit, _ = build_model(tiny_spec("deit"), weights="random", seed=0)
    assert sorted(head_modules(deit)) == ["cls_classifier", "distillation_classifier"]
    dino, _ = build_model(tiny_spec("dino"), weights="random", seed=0)
    assert head_modules(dino) == []


def test_cpu_4bit_layers_the_fused_kernel_cannot_take_stay_4bit(tmp_path: Any) -> None:
    # tiny-vit's hidden size is 32 < the 4-bit block of 64: bitsandbytes' fused CPU kernel would
    # assert; those layers are routed to its generic path, still 4-bit, and listed.
    prepared = prepare("bnb-nf4", tiny_spec("vit"), tmp_path)
    if not bnb_support.has_avx512bf16():
        pytest.skip("this CPU has no AVX512-BF16: bitsandbytes never repacks")
    assert prepared.details["proof"]["replaced_4bit_layers"] == 12
    assert len(prepared.details["cpu_generic_4bit_layers"]) == 10  # q, k, v, o, fc1 per block
    out = prepared.run(example_inputs(tiny_spec("vit"), 2, seed=1))
    assert np.isfinite(out).all()


def test_cpu_nf4_can_quantize_a_1000_class_head(tmp_path: Any) -> None:
    # transformers 5.23 + bitsandbytes 0.50 fail here with "N must be divisible by block_n" when
    # the head is quantized; the path routes it to the generic 4-bit kernel instead.
    base = small_vit()
    spec = dataclasses.replace(base, id="small-vit-1000", config={**base.config, "num_labels": 1000})
    prepared = prepare("bnb-nf4", spec, tmp_path, options={"bnb.skip_modules": []})
    assert prepared.details["proof"]["float_linear_layers_left"] == 0
    if bnb_support.has_avx512bf16():
        assert prepared.details["cpu_generic_4bit_layers"] == ["classifier"]
    assert prepared.run(example_inputs(spec, 2, seed=1)).shape == (2, 1000)


def test_cpu_4bit_compute_dtype_other_than_bf16_is_honoured(tmp_path: Any) -> None:
    # bitsandbytes' fused CPU 4-bit kernel computes in bf16 whatever bnb_4bit_compute_dtype says:
    # asking for float32 must route every layer to the generic kernel, or the result would name a
    # compute dtype that never ran.
    spec = small_vit()
    default = prepare("bnb-nf4", spec, tmp_path / "bf16")
    fp32 = prepare("bnb-nf4", spec, tmp_path / "fp32", options={"bnb.compute_dtype": "float32"})
    for prepared in (default, fp32):
        run = prepared.details["cpu_4bit_kernel_as_run"]
        assert run["fused_layers"] + run["generic_layers"] == prepared.details["proof"]["replaced_4bit_layers"] == 12
    assert fp32.details["settings"]["compute_dtype"] == "float32"
    assert fp32.details["cpu_4bit_kernel_as_run"]["fused_layers"] == 0
    assert "cpu_repacked_at_first_forward" not in fp32.details
    if bnb_support.has_avx512bf16():
        assert default.details["cpu_4bit_kernel_as_run"]["fused_layers"] == 12
        assert len(fp32.details["cpu_generic_4bit_layers"]) == 12
        assert "compute dtype float32" in fp32.details["cpu_generic_4bit_layers_reason"]
    # Same 4-bit weights, a wider compute dtype: at least as close to FP32 as the bf16 default.
    cos_default = fidelity(spec, default)["cosine"]
    cos_fp32 = fidelity(spec, fp32)["cosine"]
    assert cos_fp32 >= NF4_MIN_COSINE and cos_fp32 >= cos_default - 1e-3


# --------------------------------------------------------------------------------- verification


def _info(**kw: Any) -> dict[str, Any]:
    base = {
        "replaced_linear_layers": 12,
        "replaced_int8_layers": 0,
        "replaced_4bit_layers": 12,
        "replaced_by_class": {"Linear4bit": 12},
        "not_quantized_layers": 0,
        "replaced_but_not_quantized": [],
        "float_linear_layers_left": 1,
        "quant_types": ["nf4"],
        "replaced_weight_bytes": {"ratio_vs_fp32": 0.14},
        "weight_bytes": 100,
    }
    base.update(kw)
    return base


def test_verify_catches_int8_dressed_as_int4() -> None:
    from kit.paths.bnb import verify_bnb_model

    verify_bnb_model("bnb-nf4", "nf4", _info(), float_model_bytes=1000)
    # The study's suspicion: an "INT4" row that ran INT8.
    with pytest.raises(PathFailed, match="0 of 13 Linear layers were replaced by bitsandbytes 4-bit"):
        verify_bnb_model(
            "bnb-nf4",
            "nf4",
            _info(replaced_int8_layers=12, replaced_4bit_layers=0, replaced_by_class={"Linear8bitLt": 12}),
            1000,
        )
    with pytest.raises(PathFailed, match="other bitsandbytes method"):
        verify_bnb_model("bnb-nf4", "nf4", _info(replaced_int8_layers=2, replaced_linear_layers=14), 1000)
    with pytest.raises(PathFailed, match=r"0.260x their FP32 bytes, above the 0.17x"):
        verify_bnb_model("bnb-nf4", "nf4", _info(replaced_weight_bytes={"ratio_vs_fp32": 0.26}), 1000)
    with pytest.raises(PathFailed, match="quant_type"):
        verify_bnb_model("bnb-nf4", "nf4", _info(quant_types=["fp4"]), 1000)
    with pytest.raises(PathFailed, match="not below the FP32 model"):
        verify_bnb_model("bnb-nf4", "nf4", _info(), float_model_bytes=100)
    with pytest.raises(PathFailed, match="not quantized"):
        verify_bnb_model("bnb-nf4", "nf4", _info(not_quantized_layers=1, replaced_but_not_quantized=["x"]), 1000)


# --------------------------------------------------------------------------------- fidelity


def test_fidelity_small_model(tmp_path: Any) -> None:
    spec = small_vit()
    int8 = fidelity(spec, prepare("bnb-int8", spec, tmp_path))
    assert int8["finite"] and int8["cosine"] >= INT8_MIN_COSINE and int8["cosine_min"] >= INT8_MIN_ROW_COSINE
    nf4 = fidelity(spec, prepare("bnb-nf4", spec, tmp_path))
    assert nf4["finite"] and nf4["cosine"] >= NF4_MIN_COSINE and nf4["cosine_min"] >= NF4_MIN_ROW_COSINE
    fp4 = fidelity(spec, prepare("bnb-fp4", spec, tmp_path))
    assert fp4["finite"] and fp4["cosine"] >= FP4_MIN_COSINE
    # 4-bit is coarser than LLM.int8: the kit must not report INT4 fidelity equal to INT8's.
    assert nf4["cosine"] < int8["cosine"]


def test_fidelity_real_size_model(tmp_path: Any) -> None:
    """deit-tiny-ultra-efficient (5.7M parameters, 224 px): the smallest of the study's models."""
    from kit.models.registry import get_model

    spec = get_model("deit-tiny-ultra-efficient")
    int8 = prepare("bnb-int8", spec, tmp_path)
    f8 = fidelity(spec, int8, n=4)
    assert f8["cosine"] >= INT8_MIN_COSINE
    assert int8.details["proof"]["replaced_linear_layers"] == 72
    assert int8.details["proof"]["weight_ratio_vs_float_model"] < 0.32
    int8.close()
    nf4 = prepare("bnb-nf4", spec, tmp_path)
    f4 = fidelity(spec, nf4, n=4)
    assert f4["cosine"] >= NF4_MIN_COSINE
    assert nf4.weight_bytes / nf4.details["proof"]["float_model_weight_bytes"] < 0.2
    nf4.close()


# --------------------------------------------------------------------------------- availability


def test_backend_status_and_cpu_availability_reasons() -> None:
    ok, why = bnb_support.bnb_backend_status()
    assert isinstance(ok, bool) and why
    old = types.SimpleNamespace(__version__="0.42.0")  # no supported_torch_devices: CUDA-only era
    ok, why = bnb_support.cpu_backend_status(old)
    assert not ok and "0.42.0 has no CPU backend" in why
    assert bnb_support.version_tuple("0.45.0.dev0") == (0, 45, 0)
    assert bnb_support.version_tuple("2.13.0+cpu") == (2, 13, 0)


def test_cuda_unavailable_is_a_reason_not_a_crash() -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    for name in ("bnb-int8", "bnb-nf4", "bnb-fp4"):
        ok, why = get_path(name).available("cuda")
        assert not ok and "CUDA" in why


# --------------------------------------------------------------------------------- CUDA


@pytest.mark.cuda
@pytest.mark.parametrize("path_name", ["bnb-int8", "bnb-nf4"])
def test_cuda_path_runs_and_records_memory(path_name: str, tmp_path: Any) -> None:
    from kit.measure.latency import LatencyConfig, LatencyTracker
    from kit.measure.memory import MemoryTracker

    spec = small_vit()
    with MemoryTracker("cuda") as mem:
        prepared = prepare(path_name, spec, tmp_path, device="cuda")
        f = fidelity(spec, prepared)
        call = prepared.make_timed_call(example_inputs(spec, 4, seed=0))
        cfg = LatencyConfig(warmup_iterations=2, warmup_s=0.0, min_iterations=5, min_duration_s=0.0)
        result = LatencyTracker(cfg, device="cuda").run(call)
    d = prepared.details
    assert d["device_map"] == {"": 0}
    assert d["settings"]["float_dtype"] == "float16"
    assert d["cuda_memory_allocated_after_load_mb"] > 0
    assert result.timer == "cuda_event" and result.stats["p50"] > 0
    assert mem.result["peak_source"].startswith("torch.cuda.max_memory_allocated")
    assert mem.result["peak_mb"] >= d["cuda_memory_allocated_after_load_mb"] * 0.5
    if path_name == "bnb-int8":
        assert d["proof"]["replaced_int8_layers"] == 12
        assert f["cosine"] >= INT8_MIN_COSINE - 0.004  # fp16 activations on top of int8
    else:
        assert d["settings"]["compute_dtype"] == "float16"
        assert d["proof"]["replaced_4bit_layers"] == 12
        assert f["cosine"] >= NF4_MIN_COSINE
    prepared.close()


def test_the_kernel_fetch_notice_is_dropped_and_other_warnings_kept(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    bnb_support.quiet_import_notice()
    log = logging.getLogger("bitsandbytes.backends.cpu.ops")
    with caplog.at_level(logging.WARNING, logger="bitsandbytes.backends.cpu.ops"):
        log.warning("Failed to load CPU gemm_4bit_forward from kernels-community: %s. Please ...", "no module")
        log.warning("something else went wrong")
    assert [r.getMessage() for r in caplog.records] == ["something else went wrong"]
