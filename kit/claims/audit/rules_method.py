"""Method plausibility: a method claimed where it cannot run, methods whose results cannot be
told apart, a label naming one method for another, and published code that cannot produce the
claimed result.

Facts used (stated with each finding):
* ``torch.ao.quantization.quantize_dynamic`` (``torch.quantization.quantize_dynamic``) swaps
  ``nn.Linear`` for ``torch.ao.nn.quantized.dynamic.Linear``, whose ``quantized::linear_dynamic``
  kernels exist for the CPU backends (fbgemm, qnnpack, onednn, x86) only: there is no CUDA
  kernel, so a dynamically quantized model cannot run on an NVIDIA GPU.
* bitsandbytes <= 0.43 (the seeds pin 0.42.0) is CUDA-only (CPU support began in 0.44's
  multi-backend preview).
* bitsandbytes' INT8 is LLM.int8() (vector-wise quantization with FP16 outlier decomposition,
  ``Linear8bitLt``), not PyTorch's "dynamic quantization".
* Tiny ImageNet images are 64x64 px, 200 classes.
* Published code (``method.code``): bitsandbytes' ``Linear8bitLt``/``Linear4bit`` quantize their
  weights when moved to CUDA (``Int8Params.cuda``); a fresh layer holds its own random init until
  weights are copied in. ``GradScaler.unscale_`` raises "Attempting to unscale FP16 gradients" on
  a ``.half()`` model. ``torch.load`` defaults to ``weights_only=True`` from torch 2.6, which
  refuses a pickled ``nn.Module``. HF transformers' ViT/DeiT patch embeddings raise ValueError on
  an input size other than the config's unless ``interpolate_pos_encoding=True``; none of the HF
  ViT/DeiT/BEiT/DINOv2/MobileViT models contains ``nn.MultiheadAttention``.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator

from kit.claims.audit.claim import AuditClaim, Study, path_key
from kit.claims.audit.findings import Hit
from kit.claims.audit.model_facts import Arch, arch
from kit.claims.audit.numbers import fmt
from kit.claims.audit.registry import rule


def device_statements() -> dict[tuple[str, str], str]:
    """(path, device) -> why no result of that path on that device can be a measurement of its
    method, as the path registry declares it (kit.paths: one home for what a path is): a device
    the path has no kernels for, with the path's reason, and a device outside a stack limit of its
    library (bitsandbytes before its CPU backend, the study's 0.42 included, ran on CUDA only)."""
    from kit.paths.base import DEVICES, path_facts

    out: dict[tuple[str, str], str] = {}
    for f in path_facts().values():
        for device in DEVICES:
            if not f.runs_on(device):
                out[(f.name, device)] = f.device_reasons[device]
                continue
            for limit in f.stack_limits:
                if device not in limit.devices:
                    only = "/".join(d.upper() for d in limit.devices)
                    out[(f.name, device)] = f"is {only}-only in {limit.package} < {limit.before}"
    return out


_QDYN = re.compile(r"quantize_dynamic|torch\.quantization|torch\.ao\.quantization|dynamic quantization", re.IGNORECASE)
_BNB = re.compile(r"bitsandbytes|bnb\.|linear8bitlt|linear4bit|llm\.int8", re.IGNORECASE)


def _int8_devices(study: Study, c: AuditClaim) -> set[str]:
    """Devices of the study's INT8 result rows."""
    return {
        x.device
        for x in study.claims
        if x.device and study.same_group(x, c) and x.kind == "cell" and "int8" in (path_key(x) or "").lower()
    }


@rule(
    "method.device_support",
    family="method",
    severity="error",
    convention="PyTorch dynamic quantization has CPU kernels only; bitsandbytes 0.42 has CUDA "
    "kernels only; a result on the other device cannot be a measurement of that method",
)
def device_support(study: Study) -> Iterator[Hit]:
    """A quantization method reported on a device it has no kernels for."""
    seen: set[tuple[str, str, str]] = set()
    statements = device_statements()
    for c in study.claims:
        p = path_key(c) or ""
        if c.kind != "cell" or not c.device:
            continue
        why = statements.get((p, c.device))
        if why is None:
            continue
        key = (c.source_file, p, c.device)
        if key in seen:
            continue
        seen.add(key)
        same = [
            x
            for x in study.claims
            if x.source_file == c.source_file and path_key(x) == p and x.device == c.device and x.kind == "cell"
        ]
        gpu = study.hardware_of(c.source_file)
        yield Hit(
            f"{c.source_file}: {p} results are reported on {c.device}"
            + (f" ({gpu})" if c.device == "cuda" and gpu else "")
            + f", but that method {why}",
            f"{len(same)} {p} claims on {c.device}: " + ", ".join(f"{x.metric}={x.value}" for x in same[:6]),
            same[:8],
        )
    # Published code/method text that calls torch's dynamic quantization for results on a GPU.
    for c in study.claims:
        if c.metric != "method_description" or not isinstance(c.value, str):
            continue
        if not re.search(r"quantize_dynamic", c.value + " " + c.text):
            continue
        devices = _int8_devices(study, c)
        if "cuda" not in devices:
            continue
        yield Hit(
            f"{c.source_file}: its INT8 code calls torch's quantize_dynamic, which runs on CPU only, "
            f"while the study's INT8 results are GPU measurements",
            f"'{c.value[:120]}'; INT8 result devices in this study: {', '.join(sorted(devices))}",
            [c],
        )


@rule(
    "method.label_conflict",
    family="method",
    severity="error",
    convention="one precision label, one method: descriptions of the same label that name different "
    "libraries (bitsandbytes vs torch.quantization) or call LLM.int8 'dynamic quantization' conflict",
)
def label_conflict(study: Study) -> Iterator[Hit]:
    """A method label that names one method for another."""
    by_file: dict[str, list[AuditClaim]] = defaultdict(list)
    for c in study.metric("method_description"):
        if isinstance(c.value, str):
            by_file[c.source_file].append(c)
    for f, descs in sorted(by_file.items()):
        int8 = [
            c
            for c in descs
            if "int8" in ((c.published_label or "") + (c.subject.get("item") or "")).lower()
            or (path_key(c) or "").endswith("int8")
        ]
        bnb = [c for c in int8 if _BNB.search(c.value)]
        torchq = [c for c in int8 if re.search(r"torch\.(ao\.)?quantization|quantize_dynamic", c.value)]
        mixed = [c for c in int8 if _BNB.search(c.value) and re.search(r"dynamic quantization", c.value, re.I)]
        if bnb and torchq:
            yield Hit(
                f"{f}: INT8 is described as bitsandbytes and, in its code, as torch's quantize_dynamic: "
                "two different methods under one label",
                "; ".join(f"{c.id}: '{c.value[:90]}'" for c in [*bnb, *torchq]),
                [*bnb, *torchq],
            )
        elif mixed:
            yield Hit(
                f"{f}: INT8 is called 'dynamic quantization via BitsAndBytes'; bitsandbytes' INT8 is "
                "LLM.int8(), not PyTorch dynamic quantization",
                "; ".join(f"{c.id}: '{c.value[:90]}'" for c in mixed),
                mixed,
            )


@rule(
    "method.indistinguishable",
    family="method",
    severity="error",
    convention="two different methods (paths) of one model whose peak memories agree within "
    "printed rounding for most models, and whose averages agree, are the same computation",
)
def indistinguishable(study: Study) -> Iterator[Hit]:
    """Different methods with the same results (e.g. NF4 rows identical to INT8 rows)."""
    pairs = (("bnb-int8", "bnb-nf4"), ("torch-fp16", "torch-bf16"))
    for a_path, b_path in pairs:
        per_loc: dict[str, list[tuple[str, AuditClaim, AuditClaim]]] = defaultdict(list)
        totals: dict[str, int] = defaultdict(int)
        for c in study.cells("peak_memory_mb", kit_path=a_path):
            other = [
                x for x in study.cells("peak_memory_mb", model=c.model, kit_path=b_path) if x.location == c.location
            ]
            if not other:
                continue
            totals[c.location] += 1
            if c.iv.meets(other[0].iv):
                per_loc[c.location].append((c.model or "", c, other[0]))
        # one finding per study: the tables repeat the same rows
        by_group: dict[str, list[str]] = defaultdict(list)
        for loc, same in sorted(per_loc.items()):
            if totals[loc] >= 4 and len(same) >= 0.5 * totals[loc]:
                by_group[study.group_of(same[0][1].source_file)].append(loc)
        for _g, locs in sorted(by_group.items()):
            loc = max(locs, key=lambda k: (totals[k], len(per_loc[k])))
            same = per_loc[loc]
            aggs = _equal_aggregates(study, same[0][1], a_path, b_path)
            others = [f"{k}: {len(per_loc[k])}/{totals[k]}" for k in locs if k != loc]
            yield Hit(
                f"{b_path} and {a_path} report the same peak memory for {len(same)} of {totals[loc]} models "
                f"({loc}); different bit widths cannot give identical footprints, so the {b_path} rows "
                f"measured the {a_path} computation again",
                ", ".join(f"{m} {fmt(x.num)}" for m, x, _y in same[:10])
                + (" ...; " if len(same) > 10 else "; ")
                + (aggs or "no aggregates compared")
                + (f"; also {'; '.join(others)}" if others else ""),
                [x for _m, a, b in same[:6] for x in (a, b)],
            )


def _equal_aggregates(study: Study, near: AuditClaim, a_path: str, b_path: str) -> str:
    out = []
    for c in study.claims:
        if c.kind != "aggregate" or not c.is_number or not study.same_group(c, near):
            continue
        paths = c.over.get("kit_path", c.over.get("kit_paths"))
        if paths != a_path and paths != [a_path]:
            continue
        for d in study.claims:
            if (
                d.kind == "aggregate"
                and d.is_number
                and d.source_file == c.source_file
                and d.metric == c.metric
                and d.aggregate == c.aggregate
                and d.over.get("kit_path", d.over.get("kit_paths")) in (b_path, [b_path])
                and d.iv.meets(c.iv)
            ):
                out.append(f"{c.aggregate} {c.metric}: {fmt(c.num)} ({a_path}) = {fmt(d.num)} ({b_path})")
    return "; ".join(sorted(set(out))[:4])


_METHOD_WORDS = {"int8": ("bnb-int8",), "nf4": ("bnb-nf4",), "int4": ("bnb-nf4",), "fp16": ("torch-fp16",)}


@rule(
    "method.row_label",
    family="method",
    severity="error",
    convention="a per-method row count must equal the rows of that method's path in the per-model "
    "tables; a count equal to the rows of two paths means the other path's rows carry this label",
)
def row_label(study: Study) -> Iterator[Hit]:
    """A method label that covers another method's rows (e.g. 'Bitsandbytes Int8' on the NF4 rows)."""
    for c in study.metric("method_row_count"):
        item = str(c.subject.get("item") or c.text).lower()
        if not c.is_number:
            continue
        own = next((paths for w, paths in _METHOD_WORDS.items() if w in item), None)
        if own is None:
            continue
        rows = {}
        for p in ("torch-fp32", "torch-fp16", "bnb-int8", "bnb-nf4"):
            models = {x.model for x in study.cells("speedup", kit_path=p) if study.same_group(x, c)}
            models |= {x.model for x in study.cells("latency_ms", kit_path=p) if study.same_group(x, c)}
            rows[p] = len(models)
        n_own = sum(rows[p] for p in own)
        if n_own == 0 or int(c.num) == n_own:
            continue
        # quantized neighbours first: a label that swallowed another path's rows most likely
        # swallowed the other bitsandbytes path's
        order = sorted(rows, key=lambda p: (not p.startswith("bnb-"), p))
        extra = [p for p in order if p not in own and rows[p] and int(c.num) == n_own + rows[p]]
        if not extra:
            continue
        # the figures of the same line average the pooled rows (one root cause, listed here)
        pooled = [
            a
            for a in study.claims
            if a.kind == "aggregate" and a.source_file == c.source_file and a.text.strip() == c.text.strip()
        ]
        yield Hit(
            f"'{c.subject.get('item')}' counts {fmt(c.num)} rows = {n_own} {'/'.join(own)} + {rows[extra[0]]} "
            f"{extra[0]} rows as {fmt(c.num)} 'models': the {extra[0]} rows carry this method's label"
            + (
                f", and the line's {', '.join(f'{a.metric} {fmt(a.num)}' for a in pooled if a.is_number)} "
                f"average both methods"
                if pooled
                else ""
            ),
            f"rows per path in the tables: {', '.join(f'{p} {n}' for p, n in rows.items())}; "
            f"{fmt(c.num)} = {n_own} + {rows[extra[0]]}"
            + (f"; pooled figures: {', '.join(a.id for a in pooled)}" if pooled else ""),
            [c, *pooled],
        )


@rule(
    "method.accuracy_setup",
    family="method",
    severity="warning",
    convention="top-k accuracy needs a classifier with the dataset's classes: a backbone checkpoint "
    "(no head) needs a trained head the report must describe; Tiny ImageNet images are 64x64 px",
)
def accuracy_setup(study: Study) -> Iterator[Hit]:
    """Accuracy figures for a model or data pipeline that cannot produce them as described."""
    for f in sorted({c.source_file for c in study.claims}):
        acc = [
            c
            for c in study.claims
            if c.source_file == f and c.kind == "cell" and re.match(r"top\d+_accuracy(_pct)?$", c.metric)
        ]
        datasets = [c for c in study.metric("dataset") if c.source_file == f and isinstance(c.value, str)]
        crops = [c for c in study.metric("center_crop_px") if c.source_file == f and c.is_number]
        tiny = [d for d in datasets if "tiny imagenet" in d.value.lower()]
        if acc:
            models = sorted({c.model for c in acc if c.model})
            for m in models:
                a = arch(m)
                if a is not None and a.head == "backbone":
                    yield Hit(
                        f"{f}: top-1/top-5 accuracy reported for {m} ({a.checkpoint}), a backbone with no "
                        "classification head; the head (and its training) that produced them is not described",
                        f"registry head = backbone; {len(acc)} accuracy claims"
                        + (f"; dataset {tiny[0].value} (200 classes)" if tiny else ""),
                        [*acc[:4], *tiny[:1]],
                    )
        for d in tiny:
            for crop in crops:
                if crop.num > 64:
                    yield Hit(
                        f"{f}: Tiny ImageNet images are 64x64 px; 'center cropping to {fmt(crop.num)}x"
                        f"{fmt(crop.num)}' is impossible without an unmentioned {crop.num / 64:g}x upscale",
                        f"Tiny ImageNet: 64x64 px, 200 classes; crop {fmt(crop.num)} px",
                        [d, crop],
                    )


_CODE_CHECKS: tuple[tuple[str, re.Pattern[str], re.Pattern[str] | None, str], ...] = (
    (
        "weights not copied",
        re.compile(r"Linear8bitLt\(|Linear4bit\("),
        re.compile(r"\.weight\s*=|load_state_dict|Int8Params\(|Params4bit\(|\.data\s*=", re.I),
        "replaces each nn.Linear with a freshly initialised bitsandbytes layer and never copies the "
        "trained weights into it, so the 'quantized' model computes with random weights",
    ),
    (
        "bitsandbytes layers left on the CPU",
        re.compile(r"Linear8bitLt\(|Linear4bit\("),
        re.compile(r"\.cuda\(|\.to\(\s*(?:[\"']cuda|device)|device\s*=\s*[\"']cuda|device_map"),
        "builds bitsandbytes layers and never moves them to CUDA: Linear8bitLt/Linear4bit quantize their "
        "weights only on .cuda() / .to('cuda') (bitsandbytes 0.42 has no CPU kernels), so as listed nothing "
        "is quantized and the forward cannot run",
    ),
    (
        "INT8 model returned on the CPU",
        re.compile(r"return\s+apply_int8_quantization\(\s*\w+\s*\)\s*$", re.M),
        re.compile(
            r"apply_int8_quantization\(\s*\w+\s*\)\s*\.(?:cuda|to)\(|apply_int8_quantization\(\s*\w+\.(?:cuda|to)\("
        ),
        "returns apply_int8_quantization(model) without ever calling .cuda(): the fresh Linear8bitLt layers "
        "are created on the CPU and never quantized (bitsandbytes quantizes on the move to CUDA), and a CUDA "
        "input then meets CPU weights, so the INT8 path of this code cannot run",
    ),
    (
        "calibration that records nothing",
        re.compile(r"def\s+\w*calibrat\w*\([\s\S]*?\b_\s*=\s*model\("),
        re.compile(
            r"register_forward(?:_pre)?_hook|[Oo]bserver|prepare(?:_fx)?\(|\.append\(|\+=|"
            r"torch\.ao\.quantization"
        ),
        "runs the calibration batches and throws the outputs away: no hook, observer or statistic is kept, "
        "so it calibrates nothing (and LLM.int8()'s Linear8bitLt needs no calibration: weights are quantized "
        "when moved to the GPU, activations per row at run time)",
    ),
    (
        "GradScaler on a half model",
        re.compile(r"\.half\(\).*GradScaler|GradScaler.*\.half\(\)", re.S),
        None,
        "calls model.half() and then GradScaler: unscaling FP16 gradients raises 'Attempting to unscale "
        "FP16 gradients', so this training step cannot run",
    ),
    (
        "autocast on a half model",
        re.compile(r"\.half\(\).*autocast\(|autocast\(.*\.half\(\)", re.S),
        None,
        "wraps a model already converted with .half() in autocast: its matmuls were FP16 before autocast, "
        "which only adds casts (it runs its float32-list ops such as softmax and layer_norm in FP32 and casts "
        "back), so autocast is not what made FP16 faster and the speed comes from .half() alone",
    ),
    (
        "undefined loss function",
        re.compile(r"\bcriterion\s*\("),
        re.compile(r"\bcriterion\s*=|def\s+\w+\([^)]*\bcriterion\b|import[^\n]*\bcriterion\b"),
        "calls criterion(...), which the listing neither defines nor receives as an argument: NameError",
    ),
    (
        "torch.load of a pickled model",
        re.compile(r"torch\.load\((?![^)]*weights_only)"),
        None,
        "unpickles a whole model with torch.load(path): that runs arbitrary code from the file, and from "
        "torch 2.6 (weights_only=True by default) loading a pickled nn.Module raises UnpicklingError, so "
        "this cannot load a model on a current PyTorch",
    ),
    (
        "quantize_dynamic then CUDA",
        re.compile(r"quantize_dynamic.*\.cuda\(|\.cuda\(.*quantize_dynamic", re.S),
        None,
        "moves a dynamically quantized model to CUDA, where quantize_dynamic's Linear has no kernels",
    ),
    (
        "nn.MultiheadAttention branch",
        re.compile(r"isinstance\(\s*\w+\s*,\s*(?:torch\.)?nn\.MultiheadAttention\s*\)"),
        None,
        "selects attention by isinstance(module, nn.MultiheadAttention), but the HF transformers ViT, DeiT, "
        "BEiT, DINOv2 and MobileViT models build attention from nn.Linear layers and contain no "
        "nn.MultiheadAttention: that branch never runs",
    ),
    (
        "INT8 on a single Linear",
        re.compile(
            r"isinstance\(\s*(\w+)\s*,\s*(?:torch\.)?nn\.Linear\s*\)\s*:[^\n]*\n(?:[^\n]*\n){0,3}?"
            r"[^\n]*apply_int8_quantization\(\s*\1\s*\)"
        ),
        None,
        "passes a single nn.Linear to apply_int8_quantization, which (as published) replaces the nn.Linear "
        "children of the module it is given: a Linear has none, so no layer is quantized",
    ),
    (
        "a validation that cannot fail",
        re.compile(r"def\s+validate\w*\([\s\S]*print\([^\n]*fail", re.I),
        re.compile(r"\braise\b|\bassert\b|\breturn\b|sys\.exit"),
        "reports a failed check only with print(): it returns nothing and raises nothing, so a reproduction "
        "passes the protocol whatever it measures",
    ),
    (
        "a loop that never allocates",
        re.compile(
            r"^([ \t]*)while\s+\w+\(\)\s*<\s*\w+\s*:[ \t]*\n\1[ \t]+\w+\s*\*=\s*\d+[ \t]*\n(?!\1[ \t]+\S)", re.M
        ),
        None,
        "loops while the memory in use is below the limit, but the body only doubles a number: nothing is "
        "allocated or run, so memory never changes and the loop never ends",
    ),
    (
        "nvFuser",
        re.compile(r"fuser\(\s*[\"']fuser2[\"']\s*\)"),
        None,
        "selects 'fuser2' (TorchScript's nvFuser), deprecated by torch 2.1 (the study's version, where it "
        "still runs) and a no-op that only warns from torch 2.2 on: on a current PyTorch it fuses nothing",
    ),
)
_CODE_SEVERITY = {
    "autocast on a half model": "warning",
    "nvFuser": "info",
    "bitsandbytes layers left on the CPU": "warning",
    "calibration that records nothing": "warning",
    "undefined loss function": "warning",
    "torch.load of a pickled model": "warning",
    "nn.MultiheadAttention branch": "warning",
    "INT8 on a single Linear": "warning",
    "a validation that cannot fail": "warning",
    "a loop that never allocates": "warning",
}
# a finding that makes another redundant on the same listing (GradScaler already fails the step)
_CODE_SUBSUMES = {"GradScaler on a half model": ("autocast on a half model",)}
_FIXED_INPUT = re.compile(r"torch\.(?:randn|rand|zeros|ones|empty)\(\s*\d+\s*,\s*3\s*,\s*(\d+)\s*,\s*(\d+)\s*[,)]")
_SIZE_AWARE = re.compile(r"image_size|\.config\b|processor|interpolate_pos_encoding|input_size|resolution")
# HF ViT and DeiT patch embeddings raise ValueError on an input size other than the config's
# (transformers modeling_vit.py / modeling_deit.py: "Input image size (..) doesn't match model (..)")
# unless interpolate_pos_encoding=True; DINOv2 interpolates always, MobileViT is convolutional.
_STRICT_SIZE = ("google/vit-", "facebook/deit-")
_CODE_METRICS = ("method_description", "code", "code_listing", "published_code")


@rule(
    "method.code",
    family="method",
    severity="error",
    convention="published code checked for constructs that cannot produce the claimed result "
    "(fresh bitsandbytes layers without the trained weights or never moved to CUDA, GradScaler on a "
    ".half() model, quantize_dynamic on CUDA, a fixed input size the study's models do not take, "
    "no-op calibration or validation, nvFuser)",
)
def code(study: Study) -> Iterator[Hit]:
    """Published code that cannot produce the claimed result."""
    for c in study.claims:
        blob = "\n".join(str(x) for x in (c.value, c.raw.get("code"), c.text) if isinstance(x, str))
        if not any(tok in blob for tok in ("(", "=")) or c.metric not in _CODE_METRICS:
            continue
        fired = {
            name: m
            for name, pat, unless, _why in _CODE_CHECKS
            if (m := pat.search(blob)) and not (unless and unless.search(blob))
        }
        skip = {s for name in fired for s in _CODE_SUBSUMES.get(name, ())}
        for name, _pat, _unless, why in _CODE_CHECKS:
            if name in fired and name not in skip:
                yield Hit(
                    f"{c.source_file}: published code ({name}) {why}",
                    f"{c.id}: '{_snippet(blob, fired[name])}'",
                    [c],
                    severity=_CODE_SEVERITY.get(name),
                )
        fixed = _FIXED_INPUT.search(blob)
        if fixed and not _SIZE_AWARE.search(blob):
            yield from _fixed_input(study, c, int(fixed.group(1)), int(fixed.group(2)), fixed.group(0))


def _snippet(blob: str, m: re.Match[str]) -> str:
    """The published line(s) a check matched: the first and last line of the match."""
    first = blob.rfind("\n", 0, m.start()) + 1
    last_end = blob.find("\n", max(m.end() - 1, m.start()))
    lines = blob[first : last_end if last_end >= 0 else len(blob)].strip().splitlines()
    lines = [x.strip() for x in lines if x.strip()]
    out = lines[0] if len(lines) == 1 else f"{lines[0]} ... {lines[-1]}"
    return out[:200]


def _fixed_input(study: Study, c: AuditClaim, h: int, w: int, call: str) -> Iterator[Hit]:
    """One hard-coded input size for models that take other sizes."""
    models = sorted({x.model for x in study.claims if x.kind == "cell" and x.model and study.same_group(x, c)})
    strict: list[tuple[str, Arch]] = []
    other: list[tuple[str, Arch]] = []
    for m in models:
        a = arch(m)
        if a is None or a.image_size == h == w:
            continue
        (strict if a.checkpoint.startswith(_STRICT_SIZE) else other).append((m, a))
    if not strict and not other:
        return
    parts = []
    if strict:
        parts.append(
            ", ".join(f"{m} ({a.image_size} px)" for m, a in strict) + " raise ValueError on it "
            "(HF ViT/DeiT check the input size unless interpolate_pos_encoding=True)"
        )
    if other:
        parts.append(
            ", ".join(f"{m} ({a.image_size} px)" for m, a in other) + f" run at {h}x{w} instead of "
            "the resolution they were trained for"
        )
    yield Hit(
        f"{c.source_file}: published code (fixed input size) feeds `{call}` to every model, but "
        f"{len(strict) + len(other)} of the study's {len(models)} models take another size: " + "; ".join(parts),
        f"{c.id}; registry input sizes: "
        + ", ".join(f"{m} {a.image_size} ({a.checkpoint})" for m, a in [*strict, *other]),
        [c],
        severity="error" if strict else "warning",
    )


# targets named for a deployment, and the device each one offers a quantization backend
_TARGETS: tuple[tuple[re.Pattern[str], str, str], ...] = (
    (
        re.compile(r"\bmobile\b|\bphone|\bon-device\b|\biot\b", re.I),
        "cpu",
        "mobile devices (no NVIDIA CUDA GPU)",
    ),
    (re.compile(r"\bcpu\b|\bx86\b|\bxeon\b|\bmkl", re.I), "cpu", "the CPU"),
)


@rule(
    "method.deployment_target",
    family="method",
    severity="error",
    convention="a deployment target recommended for a quantized path must be a device the path's backend "
    "runs on, as the path registry declares it (bitsandbytes <= 0.43, the study's 0.42 included, is "
    "CUDA-only; torch dynamic INT8 is CPU-only)",
)
def deployment_target(study: Study) -> Iterator[Hit]:
    """A recommended deployment target where the named quantization backend does not run."""
    cannot = device_statements()
    for plat in study.metric("claimed_platform", "deployment_target"):
        words = f"{plat.value if isinstance(plat.value, str) else ''} {plat.text}"
        target = next(((dev, name) for pat, dev, name in _TARGETS if pat.search(words)), None)
        if target is None:
            continue
        device, name = target
        # the paths recommended for it: its own, and those of the figures in the same section
        recs: dict[str, list[AuditClaim]] = defaultdict(list)
        if plat.kit_path:
            recs[plat.kit_path].append(plat)
        for c in study.claims:
            if c is plat or c.source_file != plat.source_file or c.section != plat.section:
                continue
            paths = []
            if c.kit_path:
                paths.append(c.kit_path)
            spec = c.over.get("kit_path", c.over.get("kit_paths")) if c.kind == "aggregate" else None
            paths.extend([spec] if isinstance(spec, str) else [p for p in spec or [] if isinstance(p, str)])
            for p in paths:
                recs[p].append(c)
        for p, cs in sorted(recs.items()):
            why = cannot.get((p, device))
            if why is None:
                continue
            models = sorted({c.model or (c.over.get("models") or [None])[0] or "" for c in cs} - {""})
            pins = sorted(
                {
                    str(v.value)
                    for v in study.metric("software_version")
                    if study.same_group(v, plat) and p.startswith("bnb-") and v.subject.get("item") == "bitsandbytes"
                }
            )
            said = re.sub(r"[*]+", "", plat.text).strip(" -")[:70]
            yield Hit(
                f"{plat.source_file}: recommends {p}{' for ' + ', '.join(models) if models else ''} on {name} "
                f"('{said}'), but {p} {why}"
                + (f" (the study pins {', '.join(pins)})" if pins else "")
                + ": that backend does not run there",
                f"{plat.id}: target {plat.value!r} -> {device}; path {p} on {device}: {why}; figures: "
                + ", ".join(c.id for c in cs[:6]),
                [plat, *cs[:6]],
            )


# methods whose activation scales are computed at run time, from each input: nothing to calibrate
_RUNTIME_SCALED = {
    "torch-int8-dynamic": "dynamic quantization computes each activation's scale at run time from the input itself",
    "ort-int8-dynamic": "dynamic quantization computes each activation's scale at run time from the input itself",
    "bnb-int8": "LLM.int8() quantizes weights when moved to the GPU and activations per row at run time",
    "bnb-nf4": "NF4 stores block-quantized weights and computes in FP16: no activation scales exist",
}


@rule(
    "method.calibration_without_method",
    family="method",
    severity="warning",
    convention="a recommendation to calibrate or recalibrate is void for a method with no calibration step "
    "(dynamic INT8 and LLM.int8() scale activations at run time; NF4 keeps activations in FP16)",
)
def calibration_without_method(study: Study) -> Iterator[Hit]:
    """Calibration recommended for a quantization method that has nothing to calibrate."""
    for c in study.metric("recommendation", "deployment_recommendation"):
        if not re.search(r"\bcalibrat|\brecalibrat", f"{c.value} {c.text}", re.I):
            continue
        why = _RUNTIME_SCALED.get(c.kit_path or "")
        if why is None:
            continue
        said = re.sub(r"[*]+", "", c.text).strip(" -")[:90]
        yield Hit(
            f"{c.source_file}: recommends '{said}' for {c.kit_path}, which has no calibration step: {why}",
            f"{c.id}: method {c.kit_path}; {why}",
            [c],
        )
