"""ORT's transformer fusions as a recorded step (kit.export.ort_optimize) on the ORT paths.

What fuses on the tiny models (dynamo export, opset 20, ORT 1.32), pinned so that a change in
the exporter or the optimizer shows up here: ViT, DeiT, DINO and MobileViT get MultiHeadAttention
(after the kit's pre-pass), every family gets SkipLayerNormalization, the transformer families
BiasGelu. DINOv2 (layer scale after attention) and BEiT (relative position bias in the scores,
no key bias) keep their attention unfused.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from click.testing import CliRunner  # noqa: E402
from support.prepare import prepare_context, torch_output  # noqa: E402

from kit.cli import main  # noqa: E402
from kit.errors import BadInput  # noqa: E402
from kit.export.ort_optimize import FUSION_CHECK_COSINE, canonicalize_attention  # noqa: E402
from kit.measure.fidelity import compare_outputs  # noqa: E402
from kit.models.build import example_inputs  # noqa: E402
from kit.models.tiny import tiny_spec  # noqa: E402
from kit.paths.base import check_path_options, get_path  # noqa: E402

VIT_FAMILIES = ("vit", "deit", "dino", "dinov2", "beit")
ATTENTION_FUSES = {"vit": True, "deit": True, "dino": True, "dinov2": False, "beit": False, "mobilevit": True}
STATIC_COSINE = 0.995  # the study's fidelity target for static QDQ
CONTRIB = "com.microsoft"


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fusion-cache")


def _prepare(path: str, spec: Any, cache: Path, work: Path, **options: Any) -> tuple[np.ndarray, dict[str, Any]]:
    prepared = get_path(path).prepare(prepare_context(spec, cache, work, **options))
    try:
        out = prepared.run(example_inputs(spec, 4, seed=1235))
    finally:
        prepared.close()
    return out, prepared.details


def _ops(model_file: str) -> Counter[str]:
    proto = onnx.load(model_file, load_external_data=False)
    return Counter(n.op_type for n in proto.graph.node)


def _contrib_ops(model_file: str) -> set[str]:
    proto = onnx.load(model_file, load_external_data=False)
    return {n.op_type for n in proto.graph.node if n.domain == CONTRIB}


# --------------------------------------------------------------------------- the record


def test_fused_operator_counts_are_recorded_in_the_document(tmp_path: Path) -> None:
    from kit.results.store import Cell
    from kit.run.cell import RunOptions, measure_cell

    opts = RunOptions(out_dir=str(tmp_path), profile="quick", path_options={"fusion": True})
    doc = measure_cell(Cell("tiny-vit", "ort-fp32", "cpu", 1), opts)
    assert doc["status"] == "ok", doc.get("reason")
    fusion = doc["path_info"]["fusion"]
    assert fusion["applied"] is True
    # 2 layers: one attention, one GELU and two residual LayerNorms each (the last LN has no skip).
    assert fusion["fused_ops_in_graph"] == {"MultiHeadAttention": 2, "BiasGelu": 2, "SkipLayerNormalization": 4}
    assert fusion["fused_operator_counts"]["MultiHeadAttention"] == 2
    assert fusion["optimizer"] == "onnxruntime.transformers.optimizer.optimize_model"
    assert fusion["onnxruntime_version"] and fusion["model_type"] == "vit" and fusion["opt_level"] == 0
    assert (fusion["num_heads"], fusion["hidden_size"]) == (2, 32)
    assert fusion["fusion_options"]["use_multi_head_attention"] is True
    assert fusion["pre_pass"]["scale_mul_as_div"] == 2
    assert fusion["check"]["cosine"] >= FUSION_CHECK_COSINE and fusion["check"]["max_abs_error"] < 1e-4
    # The record says what the file holds: the session loads the fused graph.
    ops = _ops(doc["path_info"]["model_file"])
    assert ops["MultiHeadAttention"] == 2 and ops["Softmax"] == 0 and ops["Gelu"] == 0


@pytest.mark.parametrize("family", [*VIT_FAMILIES, "mobilevit"])
def test_the_fused_fp32_graph_agrees_with_pytorch(family: str, cache_dir: Path, tmp_path: Path) -> None:
    spec = tiny_spec(family)
    reference = torch_output(spec, example_inputs(spec, 4, seed=1235))
    out, details = _prepare("ort-fp32", spec, cache_dir, tmp_path, fusion=True)
    fidelity = compare_outputs(reference, out, classifier=spec.head == "classifier")
    assert fidelity["finite"] and fidelity["cosine"] >= FUSION_CHECK_COSINE, fidelity
    fusion = details["fusion"]
    assert fusion["applied"] and fusion["fused_ops_in_graph"].get("SkipLayerNormalization", 0) > 0
    fused_attention = "MultiHeadAttention" in _contrib_ops(details["model_file"])
    assert fused_attention == ATTENTION_FUSES[family], fusion["fused_ops_in_graph"]


def test_the_default_is_off_on_the_cpu_provider_and_on_for_cuda(cache_dir: Path, tmp_path: Path) -> None:
    from kit.paths.onnxruntime import default_fusion

    _, details = _prepare("ort-int8-dynamic", tiny_spec("vit"), cache_dir, tmp_path)
    assert details["fusion"]["applied"] is False and "off by default on the CPU provider" in details["fusion"]["why"]
    assert _contrib_ops(details["model_file"]) == set()
    assert default_fusion("CUDAExecutionProvider")[0] is True
    assert default_fusion("TensorrtExecutionProvider")[0] is False


def test_fusion_false_switches_it_off_and_says_so(cache_dir: Path, tmp_path: Path) -> None:
    spec = tiny_spec("vit")
    for path in ("ort-fp32", "ort-int8-dynamic", "ort-int8-static-qdq"):
        _, details = _prepare(path, spec, cache_dir, tmp_path, fusion="false")
        assert details["fusion"] == {"applied": False, "why": "off by option (fusion=false)"}
        assert _contrib_ops(details["model_file"]) == set(), path
        assert "-fused-" not in details["model_file"]
        assert details["made_in_this_cell"]["fusion"] is False
    # Off means the export as exported: ort-fp32 loads the export's own file.
    _, details = _prepare("ort-fp32", spec, cache_dir, tmp_path, fusion=False)
    assert details["model_file"] == details["export"]["cache_entry"] + "/model.onnx"


def test_fused_and_unfused_models_never_share_a_cache_entry(cache_dir: Path, tmp_path: Path) -> None:
    spec = tiny_spec("deit")
    seen: dict[tuple[str, str], str] = {}
    for path in ("ort-fp32", "ort-int8-dynamic"):
        for key, options in (
            ("on", {"fusion": True}),
            ("off", {"fusion": False}),
            ("packed", {"fusion": True, "fusion_attention": "Attention"}),
        ):
            seen[(path, key)] = _prepare(path, spec, cache_dir, tmp_path, **options)[1]["model_file"]
    assert len(set(seen.values())) == len(seen), seen
    # The packed Attention op really is another graph.
    assert "Attention" in _contrib_ops(seen[("ort-fp32", "packed")])
    assert "MultiHeadAttention" in _contrib_ops(seen[("ort-fp32", "on")])


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ({"fusion": "maybe"}, "path option fusion='maybe'"),
        (
            {"fusion_attention": "flash"},
            "fusion_attention='flash': expected one of MultiHeadAttention, Attention, none",
        ),
    ],
)
def test_a_bad_fusion_option_is_refused_at_plan_time(raw: dict[str, Any], needle: str) -> None:
    with pytest.raises(BadInput, match=needle):
        check_path_options(["ort-fp32", "ort-int8-dynamic"], raw)


def test_a_bad_fusion_value_on_the_command_line_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        ["bench", "--model", "tiny-vit", "--path", "ort-fp32", "--out", str(tmp_path), "--option", "fusion=maybe"],
    )
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("qkit: error:") and "fusion" in lines[0], result.output
    assert not list(tmp_path.rglob("*.json"))  # refused before any cell ran


# --------------------------------------------------------------------------- INT8 on the fused graph


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("family", VIT_FAMILIES)
def test_static_qdq_keeps_its_fidelity(family: str, fused: bool, cache_dir: Path, tmp_path: Path) -> None:
    spec = tiny_spec(family)
    reference = torch_output(spec, example_inputs(spec, 4, seed=1235))
    out, details = _prepare("ort-int8-static-qdq", spec, cache_dir, tmp_path, fusion=fused)
    fidelity = compare_outputs(reference, out, classifier=spec.head == "classifier")
    assert fidelity["finite"] and np.any(out), fidelity
    assert fidelity["cosine"] >= STATIC_COSINE, fidelity
    assert details["sanity"]["finite"] and not details["sanity"]["all_zero"]
    assert details["fusion"]["applied"] is fused
    if not fused:
        return
    ops = _ops(details["model_file"])
    # Quantized after fusion: the QDQ pairs and the fused ops are in the same file, and every
    # projection MatMul (MultiHeadAttention leaves them outside the op) got its DequantizeLinear.
    assert ops["QuantizeLinear"] > 0 and ops["SkipLayerNormalization"] > 0
    if ATTENTION_FUSES[family]:
        assert ops["MultiHeadAttention"] == 2 and ops["DequantizeLinear"] >= 2 * ops["MatMul"]


def test_dynamic_int8_on_the_fused_graph_quantizes_every_projection(cache_dir: Path, tmp_path: Path) -> None:
    spec = tiny_spec("vit")
    reference = torch_output(spec, example_inputs(spec, 4, seed=1235))
    out, details = _prepare("ort-int8-dynamic", spec, cache_dir, tmp_path, fusion=True)
    fidelity = compare_outputs(reference, out, classifier=True)
    assert fidelity["cosine"] >= STATIC_COSINE, fidelity
    ops = _ops(details["model_file"])
    # 2 layers x (q, k, v, out, fc1, fc2) MatMuls and the classifier's MatMul quantized; none left FP32.
    assert ops["MatMulInteger"] == 13 and ops["MatMul"] == 0 and ops["MultiHeadAttention"] == 2


# --------------------------------------------------------------------------- the pre-pass


def _scores_graph(scale: float) -> Any:
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("MatMul", ["q", "k"], ["s"]),
        helper.make_node("Mul", ["s", "scale"], ["m"]),
        helper.make_node("Softmax", ["m"], ["p"], axis=-1),
        helper.make_node("Cast", ["p"], ["y"], to=TensorProto.FLOAT),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 2, 4, 4]) for n in ("q", "k")],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 2, 4, 4])],
        [numpy_helper.from_array(np.asarray(scale, dtype=np.float32), "scale")],
    )
    graph.node.append(helper.make_node("Identity", ["y"], ["out"]))
    return helper.make_model(graph)


def test_the_pre_pass_rewrites_only_the_default_scale() -> None:
    model = _scores_graph(8**-0.5)
    assert canonicalize_attention(model) == {"softmax_identity_cast_removed": 1, "scale_mul_as_div": 1}
    assert [n.op_type for n in model.graph.node] == ["MatMul", "Div", "Softmax", "Identity"]
    # Another scale (not 1/sqrt(head size)) would change the math once fused: left as it is.
    model = _scores_graph(0.3)
    assert canonicalize_attention(model) == {"softmax_identity_cast_removed": 1}
    assert [n.op_type for n in model.graph.node] == ["MatMul", "Mul", "Softmax", "Identity"]


def _fed_by_dequantize(model_file: str) -> dict[str, list[bool]]:
    """Each MatMul/Gemm node's name -> for each input, whether a DequantizeLinear produces it."""
    graph = onnx.load(model_file, load_external_data=False).graph
    producer = {out: n.op_type for n in graph.node for out in n.output}
    return {
        n.name: [producer.get(i) == "DequantizeLinear" for i in n.input[:2]]
        for n in graph.node
        if n.op_type in ("MatMul", "Gemm")
    }


@pytest.mark.parametrize("fusion", [True, False])
def test_static_qdq_keeps_activation_products_and_the_logits_in_float(
    fusion: bool, cache_dir: Path, tmp_path: Path
) -> None:
    # DINOv2 keeps its attention core as MatMuls even when fused (no MultiHeadAttention there);
    # ORT's QDQ quantizer ignores MatMulConstBOnly, so the kit excludes those MatMuls itself.
    spec = tiny_spec("dinov2" if fusion else "vit")
    _, details = _prepare("ort-int8-static-qdq", spec, cache_dir, tmp_path, fusion=fusion)
    quantization = details["quantization"]
    assert quantization["excluded_activation_matmuls"] == 4  # 2 layers x (scores, context)
    fed = _fed_by_dequantize(details["model_file"])
    products = [name for name, inputs in fed.items() if not any(inputs)]
    assert len(products) == 4 and all(name in fed for name in products)
    assert sum(all(inputs) for inputs in fed.values()) >= 12  # the projections are quantized
    if spec.head == "classifier":  # tiny-vit: its head is a Gemm whose output is the logits
        graph = onnx.load(details["model_file"], load_external_data=False).graph
        head = [n for n in graph.node if n.op_type == "Gemm"]
        quantized = {i for n in graph.node if n.op_type == "QuantizeLinear" for i in n.input}
        assert head and fed[head[0].name] == [True, True]  # its input and weight are int8
        assert not any(out in quantized for n in head for out in n.output), "logits rounded to int8"
