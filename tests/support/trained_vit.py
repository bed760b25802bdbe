"""A small ViT (tiny-vit) trained on scikit-learn's handwritten digits, saved as a safetensors
checkpoint directory with the held-out images as an ImageFolder. Shared by the tests that need
trained weights (tests/test_accuracy_trained.py, tests/test_diagnose.py); trained once per test
process (about 15 s of CPU) and reused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

MODEL = "tiny-vit"  # ViTForImageClassification, 10 labels, 32 px
SEED = 0
EPOCHS, LR, BATCH = 30, 3e-3, 64  # about 15 s of CPU
_MADE: dict[str, tuple[Path, Path, float]] = {}


def to_pixels(images: np.ndarray) -> np.ndarray:
    """8x8 digits (0..16) -> 32x32 RGB uint8, nearest-neighbour upsampling (the saved PNGs)."""
    img = np.repeat(np.repeat(images, 4, axis=1), 4, axis=2)
    img = np.clip(np.rint(img * 255.0 / 16.0), 0, 255).astype(np.uint8)
    return np.repeat(img[..., None], 3, axis=3)


def normalise(rgb: np.ndarray) -> np.ndarray:
    x = rgb.astype(np.float32) / 255.0
    return ((x - 0.5) / 0.5).transpose(0, 3, 1, 2).copy()


def train(train_x: np.ndarray, train_y: np.ndarray) -> Any:
    import torch
    import transformers

    from kit.models.registry import get_model

    spec = get_model(MODEL)
    torch.manual_seed(SEED)
    config = getattr(transformers, spec.config_class)(
        **spec.config, id2label={i: str(i) for i in range(10)}, label2id={str(i): i for i in range(10)}
    )
    model = getattr(transformers, spec.model_class)(config)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    x, y = torch.from_numpy(normalise(train_x)), torch.from_numpy(train_y)
    gen = torch.Generator().manual_seed(SEED)
    model.train()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread is faster, and fair to a shared machine
    epochs = EPOCHS
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=epochs * ((len(x) + BATCH - 1) // BATCH))
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x), BATCH):
            idx = order[start : start + BATCH]
            loss = torch.nn.functional.cross_entropy(model(pixel_values=x[idx]).logits, y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    torch.set_num_threads(threads)
    return model.eval()


def trained_checkpoint(root: Path) -> tuple[Path, Path, float]:
    """(checkpoint dir, ImageFolder of the 360 held-out digits, FP32 top-1 % in memory), made under
    ``root`` the first time this process asks and reused after."""
    if "made" in _MADE:
        return _MADE["made"]
    from PIL import Image
    from sklearn.datasets import load_digits

    root.mkdir(parents=True, exist_ok=True)
    digits = load_digits()
    rng = np.random.default_rng(SEED)
    order = rng.permutation(len(digits.target))
    test_idx, train_idx = order[:360], order[360:]
    rgb = to_pixels(digits.images)
    model = train(rgb[train_idx], digits.target[train_idx])
    weights = root / "weights"
    model.save_pretrained(weights, safe_serialization=True)
    # The checkpoint's own preprocessing: the PNGs are already 32 px; nearest keeps them exact.
    (weights / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "do_resize": True,
                "size": {"height": 32, "width": 32},
                "resample": 0,
                "do_rescale": True,
                "rescale_factor": 1 / 255,
                "do_normalize": True,
                "image_mean": [0.5, 0.5, 0.5],
                "image_std": [0.5, 0.5, 0.5],
            }
        )
    )
    dataset = root / "images"
    for k, i in enumerate(test_idx):
        folder = dataset / str(int(digits.target[i]))
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb[i]).save(folder / f"{k:04d}.png")
    import torch

    with torch.inference_mode():
        logits = model(pixel_values=torch.from_numpy(normalise(rgb[test_idx]))).logits
    in_memory = float((logits.argmax(1).numpy() == digits.target[test_idx]).mean() * 100)
    _MADE["made"] = (weights, dataset, in_memory)
    return _MADE["made"]
