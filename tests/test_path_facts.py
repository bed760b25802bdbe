"""What a path is lives on the path: every registered path declares every fact, the registry refuses
a class that does not, and every module that needs a fact (shard costs, the compute peak, the
report's order and INT8 family, compare-int8's plan, the audit's device statements) reads it from
the registry: a probe path registered here shows up in each of them, and none of them spells a
path name in its code."""

from __future__ import annotations

import ast
import dataclasses
import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kit.claims.audit import rules_method
from kit.compare import int8 as compare_int8
from kit.measure import compute
from kit.paths import base
from kit.paths.base import (
    DEVICES,
    MATH_CLASSES,
    PRECISIONS,
    PREPARE_STEPS,
    RUNTIMES,
    PathFacts,
    PrecisionPath,
    check_path_options,
    path_facts,
    path_names,
    paths_where,
    per_device,
    reference_path,
    register_path,
)
from kit.paths.torch_paths import TorchOptions
from kit.report import data as report_data
from kit.run import shard

KIT = Path(__file__).resolve().parents[1] / "kit"


# --------------------------------------------------------------------------- every path, every fact


def test_every_registered_path_declares_every_fact() -> None:
    facts = path_facts()
    assert list(facts) == sorted(path_names(), key=lambda n: facts[n].order)
    assert set(facts) >= {
        "torch-fp32",
        "torch-fp16",
        "torch-bf16",
        "torch-int8-dynamic",
        "bnb-int8",
        "bnb-nf4",
        "ort-fp32",
        "ort-int8-dynamic",
        "ort-int8-static-qdq",
    }
    for name, f in facts.items():
        assert f.name == name
        assert f.runtime in RUNTIMES and f.precision in PRECISIONS and f.math_class in MATH_CLASSES
        assert f.method and f.description
        assert f.devices and set(f.devices) <= set(DEVICES)
        assert set(f.cost) == set(f.devices) and all(v > 0 for v in f.cost.values())
        assert set(f.prepare_steps) <= set(PREPARE_STEPS)
        assert set(f.device_reasons) == set(DEVICES) - set(f.devices)  # every missing device says why
        assert set(f.providers) == set(f.devices) and all(p[0] is None for p in f.providers.values())
        baseline = facts[f.baseline]
        assert baseline.is_baseline and baseline.runtime == f.runtime and baseline.precision == "fp32"
    assert len({f.order for f in facts.values()}) == len(facts)
    assert [n for n, f in facts.items() if f.reference] == ["torch-fp32"] == [reference_path()]


def test_the_truth_the_modules_used_to_disagree_on() -> None:
    facts = path_facts()
    # ORT's CUDA provider runs QDQ models: static QDQ is cpu and cuda (the audit said CPU-only).
    assert facts["ort-int8-static-qdq"].devices == ("cpu", "cuda")
    assert facts["ort-int8-static-qdq"].providers["cuda"] == (None, "tensorrt")
    assert facts["ort-int8-dynamic"].devices == facts["torch-int8-dynamic"].devices == ("cpu",)
    assert facts["bnb-int8"].method == "LLM.int8 (bitsandbytes)" and facts["bnb-int8"].runtime == "torch"
    assert [f.baseline for f in facts.values() if f.runtime == "onnxruntime"] == ["ort-fp32"] * len(
        paths_where(runtime="onnxruntime")
    )
    assert facts["bnb-nf4"].math_class == "int4" and facts["bnb-nf4"].precision == "int4"


def _probe_class(**overrides: Any) -> type[PrecisionPath]:
    """A complete path class (not registered), with some facts replaced."""

    class Probe(PrecisionPath):
        name = "test-probe-int8"
        family = "torch"
        runtime = "torch"
        method = "probe INT8 (tests)"
        description = "a path that exists only in tests/test_path_facts.py"
        precision = math_class = "int8"
        devices = ("cuda",)
        device_reasons = per_device(cpu="has probe kernels on CUDA only")
        cost = per_device(cuda=3.5)
        prepare_steps = ("torch-quantize",)
        order = 10_000
        baseline = "torch-fp32"
        options_class = TorchOptions

        def available(self, device: str) -> tuple[bool, str]:
            return False, "a test probe"

        def prepare(self, ctx: Any) -> Any:
            raise AssertionError("never prepared")

    for key, value in overrides.items():
        if value is dataclasses.MISSING:
            delattr(Probe, key)
        else:
            setattr(Probe, key, value)
    return Probe


@pytest.mark.parametrize(
    ("overrides", "fact"),
    [
        ({"method": dataclasses.MISSING}, "method"),
        ({"cost": dataclasses.MISSING}, "cost"),
        ({"order": dataclasses.MISSING}, "order"),
        ({"math_class": "int3"}, "math_class"),
        ({"runtime": "tensorflow"}, "runtime"),
        ({"cost": per_device(cpu=1.0, cuda=1.0)}, "cost"),  # a factor for a device it does not run on
        ({"device_reasons": per_device()}, "device_reasons"),  # cpu missing, and no reason why
        ({"prepare_steps": ("compile",)}, "prepare_steps"),
        ({"baseline": "test-probe-int8"}, "precision"),  # its own baseline must be FP32
        ({"default_devices": ("cpu",)}, "default_devices"),
        ({"options_class": dict}, "options_class"),
    ],
)
def test_a_path_class_with_a_missing_or_invalid_fact_is_refused(overrides: dict[str, Any], fact: str) -> None:
    with pytest.raises(ValueError, match=f"fact {fact}="):
        register_path(_probe_class(**overrides))
    assert "test-probe-int8" not in base._PATHS


def test_a_display_order_taken_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="display order 10 is already torch-fp32's"):
        register_path(_probe_class(order=10))


# --------------------------------------------------------------------------- the consumers follow


@pytest.fixture
def probe() -> Iterator[PathFacts]:
    """A registered probe path (an INT8 torch path on CUDA only), removed afterwards."""
    cls = register_path(_probe_class())
    shard._facts.cache_clear()
    shard._path_runs_on.cache_clear()
    try:
        yield cls.facts()
    finally:
        del base._PATHS[cls.name]
        shard._facts.cache_clear()
        shard._path_runs_on.cache_clear()


def test_shard_costs_are_the_declared_ones() -> None:
    for name, f in path_facts().items():
        for device in DEVICES:
            assert shard._path_runs_on(name, device) == f.runs_on(device)
            if f.runs_on(device):
                assert shard._path_factor(name, device) == f.cost[device]


def test_shard_prices_the_declared_prepare_steps(probe: PathFacts) -> None:
    from kit.results.store import Cell

    assert shard._path_factor(probe.name, "cuda") == 3.5
    assert shard.cell_cost(Cell("vit-huge-patch14-2020", probe.name, "cpu", 1)) == shard.SKIP_COST_S
    # torch-quantize: the same prepare price as torch-int8-dynamic, whatever the name says.
    params = 1_000_000
    assert shard._prepare_s(probe.name, params, 1.0) == shard._prepare_s("torch-int8-dynamic", params, 1.0) > 0
    assert shard._prepare_s("ort-int8-static-qdq", params, 1.0) > shard._prepare_s("ort-int8-dynamic", params, 1.0)


def test_compute_takes_the_declared_math_class() -> None:
    for name, f in path_facts().items():
        cls, _ = compute.math_class(f.math_class, {"settings": {"compute_dtype": "float16"}}, {"tf32_matmul": False})
        assert cls == {"int4": "fp16"}.get(f.math_class, f.math_class), name
    # A path name is not a math class: compute does not guess from names any more.
    assert compute.math_class("torch-fp16")[0] is None and compute.math_class("bnb-int8")[0] is None
    # The cell passes the path's declaration (compute sits below the paths and does not import them).
    source = (KIT / "run" / "cell.py").read_text()
    assert "declared_math=path.math_class" in source


def test_report_order_family_and_baseline_are_the_registry_s() -> None:
    assert tuple(path_facts()) == report_data.PATH_ORDER
    assert tuple(paths_where(precision="int8")) == report_data.INT8_PATHS
    assert reference_path() == report_data.BASELINE_PATH
    ranked = sorted(path_names(), key=report_data.path_rank)
    assert ranked == sorted(path_names(), key=lambda n: path_facts()[n].order)
    assert report_data.path_rank("not-a-path")[0] == len(path_facts())  # unknown names go last


def test_compare_int8_plans_every_declared_int8_method_on_every_provider(probe: PathFacts) -> None:
    rows = compare_int8.plan_rows(list(DEVICES))
    planned = {(r.path, r.device, r.provider) for r in rows}
    expected = {(f.name, d, p) for f in path_facts().values() if f.is_int8 for d in f.devices for p in f.providers[d]}
    assert expected <= planned and (probe.name, "cuda", None) in planned
    for row in rows:
        f = path_facts()[row.path]
        assert f.is_int8 or (f.is_baseline and row.role == "baseline")
        assert row.runtime == f.runtime
        base_row = compare_int8.baseline_of(row)
        assert base_row.path == f.baseline and base_row in rows
    assert ("ort-int8-static-qdq", "cuda", None) in planned  # the registry's truth, on CUDA's default EP
    assert compare_int8.plan_rows(["cpu"]) == [r for r in rows if r.device == "cpu"]


def test_the_audit_s_device_statements_are_the_registry_s(probe: PathFacts) -> None:
    statements = rules_method.device_statements()
    for name, f in path_facts().items():
        for device in DEVICES:
            if not f.runs_on(device):
                assert statements[(name, device)] == f.device_reasons[device]
            elif any(device not in limit.devices for limit in f.stack_limits):
                assert "-only in" in statements[(name, device)]
            else:
                assert (name, device) not in statements
    assert ("ort-int8-static-qdq", "cuda") not in statements  # ORT's CUDA EP runs QDQ models
    assert statements[("torch-int8-dynamic", "cuda")].startswith("has CPU kernels only")
    assert statements[("bnb-int8", "cpu")] == "is CUDA-only in bitsandbytes < 0.46"  # the study pins 0.42
    assert statements[(probe.name, "cpu")] == "has probe kernels on CUDA only"


def _cell_claim(cid: str, path: str, device: str) -> dict[str, Any]:
    return {
        "id": cid,
        "source_file": "900_probe.txt",
        "section": "Results",
        "text": f"{path} on {device}: 12.0 ms",
        "metric": "latency_ms",
        "value": 12.0,
        "unit": "ms",
        "subject": {"kind": "cell", "model": "vit-base-224-production"},
        "kit_path": path,
        "device": device,
        "batch_size": 1,
    }


def test_the_audit_rule_says_what_the_registry_says() -> None:
    from kit.claims.audit import run_audit

    claims = [
        _cell_claim("900.qdq.cuda", "ort-int8-static-qdq", "cuda"),
        _cell_claim("900.dyn.cuda", "ort-int8-dynamic", "cuda"),
        _cell_claim("900.torchdyn.cuda", "torch-int8-dynamic", "cuda"),
        _cell_claim("900.bnb.cpu", "bnb-nf4", "cpu"),
        _cell_claim("900.bnb.cuda", "bnb-nf4", "cuda"),
    ]
    findings = run_audit(claims, rules=["method.device_support"])
    flagged = {c.id for f in findings for c in f.claims}
    assert flagged == {"900.dyn.cuda", "900.torchdyn.cuda", "900.bnb.cpu"}
    by_claim = {f.claims[0].id: f.message for f in findings}
    assert "CPU provider only" in by_claim["900.dyn.cuda"]
    assert "quantized::linear_dynamic" in by_claim["900.torchdyn.cuda"]
    assert "CUDA-only in bitsandbytes" in by_claim["900.bnb.cpu"]


# --------------------------------------------------------------------------- no path names in code


def _code_strings(tree: ast.AST) -> set[str]:
    """String constants of the code, docstrings left out."""
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    return {
        n.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings
    }


@pytest.mark.parametrize(
    "module",
    [shard, compute, compare_int8, report_data],
    ids=lambda m: m.__name__,
)
def test_consumers_spell_no_path_name(module: Any) -> None:
    # A list of path names (or a name to match) in one of these modules is a second home for a
    # fact the path declares: it would drift, as CPU_ONLY_PATHS did.
    tree = ast.parse(Path(inspect.getfile(module)).read_text())
    assert not _code_strings(tree) & set(path_names())


def test_the_audit_s_device_rule_spells_no_path_name() -> None:
    tree = ast.parse(Path(inspect.getfile(rules_method)).read_text())
    rule_functions = [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.FunctionDef) and n.name in ("device_statements", "device_support")
    ]
    assert len(rule_functions) == 2
    for fn in rule_functions:
        assert not _code_strings(fn) & set(path_names()), fn.name
    assert not hasattr(rules_method, "CPU_ONLY_PATHS") and not hasattr(rules_method, "CUDA_ONLY_PATHS")


# --------------------------------------------------------------------------- options per family


def test_each_family_declares_its_option_keys() -> None:
    facts = path_facts()
    assert facts["torch-fp32"].options_keys == ()
    assert "bnb.compute_dtype" in facts["bnb-nf4"].options_keys
    assert {"provider", "calibration_dir", "trt_fp16"} <= set(facts["ort-int8-static-qdq"].options_keys)
    for f in facts.values():  # one options class per family
        assert f.options_keys == facts[paths_where(family=f.family)[0]].options_keys


def test_options_are_checked_against_the_selected_families_only() -> None:
    typed = check_path_options(["torch-fp32", "bnb-int8"], {"bnb.float_dtype": "fp16", "ray.num_cpus": 2})
    assert set(typed) == {"torch", "bitsandbytes"}
    assert typed["bitsandbytes"].float_dtype == "float16"  # type: ignore[attr-defined]
    with pytest.raises(base.BadInput, match="unknown path option 'provider'"):
        check_path_options(["torch-fp32", "bnb-int8"], {"provider": "cpu"})  # an ORT key, no ORT path
    with pytest.raises(base.BadInput, match="unknown path 'fp8'"):
        check_path_options(["fp8"], {})
