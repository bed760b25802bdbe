"""Top-1/top-5 accuracy of a model's paths on an ImageFolder dataset (for seed 004's claims).

``qkit accuracy --model M --weights DIR --dataset DIR`` builds the model from a local checkpoint,
prepares each path, runs every image through it and writes one accuracy document per path:
``<out>/<model>__<path>__<device>.accuracy.json`` (``kind: qkit-accuracy``), which
``qkit validate`` reads. Labels: the dataset's class folder names are matched against the
checkpoint's ``config.json`` ``id2label``; a folder that matches no label is an error, never a
guess. torch, PIL and the model/path registries are imported only when the command runs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import platform
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from kit import documents
from kit.errors import one_line
from kit.results.figures import wilson_interval

ACCURACY_KIND = "qkit-accuracy"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff")


class AccuracyError(ValueError):
    """Bad input for an accuracy run (dataset layout, labels, checkpoint). ``str`` is one line."""


# ------------------------------------------------------------------------------- documents


def accuracy_problem(doc: Any) -> str | None:
    """Why ``doc`` is not a usable accuracy document (one line, from its schema), or None."""
    return documents.problem(doc, "accuracy")


def wilson_ci95(hits: int, n: int) -> tuple[float, float]:
    """Wilson score interval for a proportion, in percent (``kit.results.figures.wilson_interval``)."""
    lo, hi = wilson_interval(hits, n)
    return (100.0 * lo, 100.0 * hi)


def _utc() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def accuracy_document(
    model: str,
    path: str,
    device: str,
    counts: tuple[int, int, int] | None,
    dataset: dict[str, Any],
    weights: str,
    environment: dict[str, Any],
    started: str,
    reason: str | None = None,
) -> dict[str, Any]:
    """One path's accuracy as a document; ``counts`` = (top1 hits, top5 hits, images) or None."""
    doc: dict[str, Any] = {
        "schema_version": "1",
        "kind": ACCURACY_KIND,
        "model": model,
        "path": path,
        "device": device,
        "status": "ok" if counts else ("skipped" if reason and reason.startswith("unavailable") else "failed"),
        "reason": None if counts else (reason or "no images evaluated"),
        "dataset": dataset,
        "weights": weights,
        "environment": environment,
        "started_utc": started,
        "finished_utc": _utc(),
    }
    if counts:
        top1, top5, n = counts
        doc.update(
            top1_pct=100 * top1 / n,
            top5_pct=100 * top5 / n,
            images=n,
            top1_ci95=list(wilson_ci95(top1, n)),
            top5_ci95=list(wilson_ci95(top5, n)),
            ci_method="Wilson score interval, 95%",
        )
    return doc


# ------------------------------------------------------------------------------- dataset


def image_folder(dataset: Path) -> list[tuple[Path, str]]:
    """(image, class folder name) pairs of an ImageFolder layout: ``dataset/<class>/<image>``."""
    if not dataset.is_dir():
        raise AccuracyError(f"--dataset {dataset}: not a directory")
    classes = sorted(p for p in dataset.iterdir() if p.is_dir() and not p.name.startswith("."))
    items = [(img, c.name) for c in classes for img in sorted(c.rglob("*")) if img.suffix.lower() in IMAGE_SUFFIXES]
    if not items:
        raise AccuracyError(
            f"--dataset {dataset}: no images in class sub-folders (ImageFolder layout: DIR/<class>/*.jpg)"
        )
    return items


def _label_keys(label: str) -> set[str]:
    # ImageNet labels read "tench, Tinca tinca": every synonym, case- and separator-insensitive.
    parts = [label, *label.split(",")]
    return {" ".join(p.replace("_", " ").lower().split()) for p in parts if p.strip()}


def label_index(class_names: list[str], id2label: dict[str, str]) -> dict[str, int]:
    """Class folder name -> the checkpoint's class index; every folder must match exactly one label."""
    by_key: dict[str, set[int]] = {}
    for raw_id, label in id2label.items():
        for key in _label_keys(str(label)):
            by_key.setdefault(key, set()).add(int(raw_id))
    mapping, unmatched = {}, []
    for name in sorted(set(class_names)):
        key = " ".join(name.replace("_", " ").lower().split())
        ids = by_key.get(key, set())
        if len(ids) == 1:
            mapping[name] = next(iter(ids))
        elif name.isdigit() and name in {str(i) for i in map(int, id2label)}:
            mapping[name] = int(name)
        else:
            unmatched.append(name)
    if unmatched:
        shown = ", ".join(unmatched[:5]) + (f" (+{len(unmatched) - 5} more)" if len(unmatched) > 5 else "")
        raise AccuracyError(
            f"{len(unmatched)} class folder(s) match no single id2label entry of the checkpoint: {shown}; "
            "name the folders by label or by class index"
        )
    return mapping


def read_id2label(weights: Path) -> dict[str, str]:
    config = weights / "config.json"
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise AccuracyError(f"--weights {weights}: cannot read config.json ({exc})") from None
    id2label = data.get("id2label") if isinstance(data, dict) else None
    if not isinstance(id2label, dict) or not id2label:
        raise AccuracyError(f"--weights {weights}: config.json has no id2label: not a classification checkpoint")
    return {str(k): str(v) for k, v in id2label.items()}


# --------------------------------------------------------------------------- preprocessing


@dataclass(frozen=True)
class Preprocess:
    """How an image becomes model input: the checkpoint's own image-processor settings."""

    crop: int
    resize_shortest: int | None  # resize the shorter side, then centre-crop ``crop``
    resize_exact: tuple[int, int] | None  # or resize to (height, width) directly (ViT's processor)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    rescale: float = 1 / 255
    resample: int = 3  # PIL.Image.BICUBIC
    flip_channels: bool = False  # MobileViT's processor feeds BGR

    def describe(self) -> str:
        size = (
            f"resize to {self.resize_exact[0]}x{self.resize_exact[1]}"
            if self.resize_exact
            else f"resize shorter side to {self.resize_shortest}, centre crop {self.crop}"
        )
        return (
            f"{size} (PIL resample {self.resample}), scale {self.rescale:.6g}, normalise mean {self.mean} "
            f"std {self.std}{', RGB->BGR' if self.flip_channels else ''}"
        )


def _read_processor_config(weights: Path) -> dict[str, Any]:
    try:
        conf = json.loads((weights / "preprocessor_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return conf if isinstance(conf, dict) else {}


def preprocess_for(weights: Path, image_size: int, mean: Any, std: Any) -> Preprocess:
    """The checkpoint's preprocessor_config.json where it says, else the registry's size and stats."""
    conf = _read_processor_config(weights)
    crop = conf.get("crop_size", image_size)
    crop = int(crop.get("height", image_size)) if isinstance(crop, dict) else int(crop)
    size = conf.get("size")
    exact = None
    if isinstance(size, dict) and "height" in size and not conf.get("do_center_crop", False):
        exact = (int(size["height"]), int(size["width"] if "width" in size else size["height"]))
    shortest = size.get("shortest_edge") if isinstance(size, dict) else size
    normalize = conf.get("do_normalize", True)
    return Preprocess(
        crop=exact[0] if exact else crop,
        resize_shortest=None if exact else max(int(shortest or round(crop / 0.875)), crop),
        resize_exact=exact,
        mean=tuple(conf.get("image_mean", mean)) if normalize else (0.0, 0.0, 0.0),
        std=tuple(conf.get("image_std", std)) if normalize else (1.0, 1.0, 1.0),
        rescale=float(conf.get("rescale_factor", 1 / 255)) if conf.get("do_rescale", True) else 1.0,
        resample=int(conf.get("resample", 3)),
        flip_channels=bool(conf.get("do_flip_channel_order", False)),
    )


def _resize_and_crop(img: Any, prep: Preprocess) -> Any:
    if prep.resize_exact:
        height, width = prep.resize_exact
        return img.resize((width, height), prep.resample)
    w, h = img.size
    scale = (prep.resize_shortest or prep.crop) / min(w, h)
    img = img.resize((max(1, round(w * scale)), max(1, round(h * scale))), prep.resample)
    w, h = img.size
    left, top = (w - prep.crop) // 2, (h - prep.crop) // 2
    return img.crop((left, top, left + prep.crop, top + prep.crop))


def load_image(path: Path, prep: Preprocess) -> np.ndarray:
    """One image as float32 CHW, preprocessed."""
    from PIL import Image

    with Image.open(path) as img:
        arr: np.ndarray = np.asarray(_resize_and_crop(img.convert("RGB"), prep), dtype=np.float32) * prep.rescale
    if prep.flip_channels:
        arr = arr[..., ::-1]
    arr = (arr - np.asarray(prep.mean, dtype=np.float32)) / np.asarray(prep.std, dtype=np.float32)
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def batches(items: list[tuple[Path, int]], size: int, prep: Preprocess) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    for start in range(0, len(items), size):
        chunk = items[start : start + size]
        pixels = np.stack([load_image(p, prep) for p, _ in chunk])
        yield pixels, np.asarray([label for _, label in chunk], dtype=np.int64)


# ------------------------------------------------------------------------------ counting


def topk_hits(logits: np.ndarray, labels: np.ndarray, k: int) -> int:
    """How many rows have their label among the ``k`` largest logits."""
    k = min(k, logits.shape[1])
    top = np.argpartition(-logits, kth=k - 1, axis=1)[:, :k]
    return int((top == labels[:, None]).any(axis=1).sum())


def count_hits(
    run: Callable[[np.ndarray], np.ndarray], data: Iterator[tuple[np.ndarray, np.ndarray]], num_labels: int
) -> tuple[int, int, int]:
    top1 = top5 = n = 0
    for pixels, labels in data:
        logits = np.asarray(run(pixels), dtype=np.float32)
        if logits.ndim != 2 or logits.shape[1] != num_labels:
            raise AccuracyError(
                f"model output has shape {tuple(logits.shape)}; the checkpoint's config has {num_labels} labels: "
                "not a classifier output"
            )
        top1 += topk_hits(logits, labels, 1)
        top5 += topk_hits(logits, labels, 5)
        n += len(labels)
    return top1, top5, n


# ------------------------------------------------------------------------------- running


def _environment() -> dict[str, Any]:
    try:
        from kit.measure.environment import collect_environment

        return collect_environment(None)
    except Exception as exc:  # environment capture must never sink the measurement
        return {"python": platform.python_version(), "os": platform.platform(), "error": str(exc)}


def _fingerprint(weights: Path) -> str:
    listing = sorted((p.name, p.stat().st_size) for p in weights.iterdir() if p.is_file())
    return hashlib.sha256(json.dumps(listing).encode()).hexdigest()[:24]


def classifier_spec(spec: Any) -> Any:
    """The spec as an image classifier: accuracy needs logits, and a backbone spec (DINOv2, ViT-H
    in21k, DINO) would load a fine-tuned checkpoint without its head. ``XModel`` becomes
    ``XForImageClassification``; the architecture fields (checked against config.json) stay."""
    if spec.head == "classifier":
        return spec
    name = spec.model_class
    cls = name[: -len("Model")] + "ForImageClassification" if name.endswith("Model") else name
    return dataclasses.replace(spec, model_class=cls, head="classifier", primary_output="logits", model_kwargs={})


def evaluate_path(
    spec: Any,
    path_name: str,
    device: str,
    weights: Path,
    items: list[tuple[Path, int]],
    prep: Preprocess,
    num_labels: int,
    batch_size: int,
    cache_dir: str | None = None,
) -> tuple[int, int, int]:
    """Prepare one path from the local checkpoint and count top-1/top-5 hits over ``items``.

    ``cache_dir`` is shared by the paths of one run, so the ONNX export of the checkpoint is made
    once for every ORT path (keyed by the checkpoint's fingerprint), not once per path."""
    from kit.models.build import build_model
    from kit.paths.base import PrepareContext, get_path

    path = get_path(path_name)
    ok, why = path.supports_device(device)
    if ok:
        ok, why = path.available(device)
    if not ok:
        raise AccuracyError(f"unavailable: {why}")
    with tempfile.TemporaryDirectory(prefix="qkit-acc-") as work:
        ctx = PrepareContext(
            spec=spec,
            device=device,
            batch_size=batch_size,
            build_float_model=lambda: build_model(spec, weights=str(weights))[0],
            work_dir=work,
            cache_dir=cache_dir or work,
            weights_fingerprint=_fingerprint(weights),
        )
        prepared = path.prepare(ctx)
        try:
            return count_hits(prepared.run, batches(items, batch_size, prep), num_labels)
        finally:
            prepared.close()


def run_accuracy(
    model: str, weights: Path, dataset: Path, paths: list[str], device: str, batch_size: int, limit: int | None
) -> list[dict[str, Any]]:
    """One accuracy document per path; a path that cannot run gives a skipped/failed document."""
    from kit.models.registry import get_model

    try:
        spec = classifier_spec(get_model(model))
    except KeyError as exc:
        raise AccuracyError(str(exc).strip("'\"")) from None
    id2label = read_id2label(weights)
    folders = image_folder(dataset)
    mapping = label_index([name for _, name in folders], id2label)
    items = [(img, mapping[name]) for img, name in folders][: limit or None]
    prep = preprocess_for(weights, spec.image_size, spec.mean, spec.std)
    info = {
        "dir": str(dataset),
        "images_found": len(folders),
        "classes": len(mapping),
        "labels": "class folders matched to config.json id2label",
        "preprocess": prep.describe(),
        "limit": limit,
        "model_class": spec.model_class,
    }
    env, docs = _environment(), []
    with tempfile.TemporaryDirectory(prefix="qkit-acc-cache-") as cache:
        for name in paths:
            docs.append(
                _accuracy_of_path(
                    model, spec, name, device, weights, items, prep, id2label, batch_size, cache, info, env
                )
            )
    return docs


def _accuracy_of_path(
    model: str,
    spec: Any,
    name: str,
    device: str,
    weights: Path,
    items: list[tuple[Path, int]],
    prep: Preprocess,
    id2label: dict[str, str],
    batch_size: int,
    cache: str,
    info: dict[str, Any],
    env: dict[str, Any],
) -> dict[str, Any]:
    started = _utc()
    try:
        counts = evaluate_path(spec, name, device, weights, items, prep, len(id2label), batch_size, cache)
    except (AccuracyError, KeyError, RuntimeError, ValueError) as exc:
        return accuracy_document(model, name, device, None, info, str(weights), env, started, reason=one_line(str(exc)))
    return accuracy_document(model, name, device, counts, info, str(weights), env, started)


def accuracy_file(out_dir: Path, doc: dict[str, Any]) -> Path:
    return out_dir / f"{doc['model']}__{doc['path']}__{doc['device']}.accuracy.json"


def write_accuracy(out_dir: Path, doc: dict[str, Any]) -> Path:
    """Check ``doc`` against the accuracy schema, then write it atomically (`kit.documents.write`)."""
    return documents.write(accuracy_file(out_dir, doc), doc, "accuracy")
