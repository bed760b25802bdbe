"""``qkit diagnose``: which layers of a quantized path cost its fidelity (library: `kit.diagnose`)."""

from __future__ import annotations

from pathlib import Path

import click

from kit.commands.common import quiet_libraries
from kit.diagnose import DEFAULT_IMAGES, DEFAULT_TARGET_COSINE, SUPPORTED_PATHS
from kit.diagnose import diagnose as run_diagnosis
from kit.diagnose.document import text_table, write_document
from kit.diagnose.figure import write_figure


@click.command("diagnose")
@click.option("--model", required=True, help="Model id (qkit models; tiny-* test models too).")
@click.option("--path", "path", required=True, help=f"Quantized path: {', '.join(SUPPORTED_PATHS)}.")
@click.option("--weights", default="random", show_default=True, help="random | hub | a local checkpoint directory")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of random weights.")
@click.option("--images", default=DEFAULT_IMAGES, show_default=True, type=click.IntRange(min=1), help="Seeded images.")
@click.option(
    "--target-cosine",
    default=DEFAULT_TARGET_COSINE,
    show_default=True,
    type=float,
    help="Final-output cosine the keep-in-float set must reach (verified by re-quantizing).",
)
@click.option("--no-keep-search", is_flag=True, help="Skip the keep-in-float search.")
@click.option("--top", default=10, show_default=True, type=click.IntRange(min=0), help="Layers in the table.")
@click.option("--json", "json_file", type=click.Path(path_type=Path), default=None, help="Write the diagnosis here.")
@click.option("--figure", type=click.Path(path_type=Path), default=None, help="Write the error-by-depth PNG here.")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Directory for <model>__<path>.diagnosis.json and .png (when --json/--figure are not given).",
)
@click.option("--cache-dir", default=None, help="Keep ONNX exports here between runs (default: a temporary dir).")
def diagnose(
    model: str,
    path: str,
    weights: str,
    seed: int,
    images: int,
    target_cosine: float,
    no_keep_search: bool,
    top: int,
    json_file: Path | None,
    figure: Path | None,
    out: Path | None,
    cache_dir: str | None,
) -> None:
    """Per-layer error of a quantized path against FP32, worst first, and the layers to keep in float."""
    quiet_libraries()
    result = run_diagnosis(
        model,
        path,
        weights=weights,
        seed=seed,
        images=images,
        target_cosine=None if no_keep_search else target_cosine,
        cache_dir=cache_dir,
    )
    stem = f"{model}__{path}"
    if out is not None:
        json_file = json_file or out / f"{stem}.diagnosis.json"
        figure = figure or out / f"{stem}.png"
    click.echo(text_table(result, top))
    if figure is not None:
        click.echo(f"figure: {write_figure(result, figure)}")
    if json_file is not None:
        click.echo(f"json: {write_document(json_file, result, str(figure) if figure else None)}")
