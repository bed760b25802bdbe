"""``qkit init DIR``: scaffold a study folder for a reviewer starting on a new paper."""

from __future__ import annotations

from pathlib import Path

import click

from kit.errors import BadInput

MODELS_YAML = """\
# The paper's models. One entry per model; see docs/claims-format.md, "Your own models".
#   id:             the name your claims use (lower-case letters, digits, . _ -)
#   checkpoint:     a local checkpoint directory (config.json + *.safetensors), relative to this file
#   config:         or a config.json alone (seeded random weights: right for size, speed, memory)
#   image_size, head (classifier|backbone), output (logits|pooler_output|cls_token),
#   normalization (imagenet-default|imagenet-standard|none) or mean/std, model_class,
#   model_kwargs, checkpoint_id (the public checkpoint it stands for), notes: optional overrides;
#   otherwise they come from config.json / preprocessor_config.json, and `qkit reproduce` prints
#   where each fact came from.
models:
  # An example that runs as is (ViT-B/16 at 224 px, random weights); replace it with yours.
  - id: example-vit-b16
    checkpoint_id: google/vit-base-patch16-224
    config:
      model_type: vit
      architectures: [ViTForImageClassification]
      hidden_size: 768
      num_hidden_layers: 12
      num_attention_heads: 12
      intermediate_size: 3072
      image_size: 224
      patch_size: 16
      num_labels: 1000
    normalization: imagenet-standard
  # - id: my-finetuned-vit
  #   checkpoint: ./checkpoints/my-finetuned-vit
"""

CLAIMS_YAML = """\
# The paper's claims, one row each; `qkit claims import claims.yaml` (in this folder) turns this into
# a schema-checked claims file NNN_<hash>.json beside it, which makes this folder a claims folder
# (`qkit validate --expected .`). Columns: see docs/claims-format.md, "Writing claims".
# Copy every number from the paper's text (quote it in `text`); never estimate one.
number: {number}              # three digits: every claim id starts with it
title: "TITLE OF THE PAPER"
source: "URL or citation of the paper"
hardware:
  gpu: null                 # the GPU the paper measured on, as it names it, or null
  cpu: null                 # likewise the CPU
claims: []
# A row looks like this (remove the [] above and the # signs):
#  - model: example-vit-b16        # an id of models.yaml (leave out for a statement about the study)
#    path: torch-int8-dynamic      # the kit path that is the paper's method (qkit reproduce --help)
#    device: cpu
#    batch: 1
#    metric: model_size_mb         # see the metrics table in docs/claims-format.md
#    value: 0                      # the paper's number
#    unit: MB
#    tolerance: 5%                 # 5% relative, 0.5 absolute, or exact
#    tolerance_reason: "why that much: rounding, 'about', MB vs MiB ..."
#    class: portable               # portable | relative | hardware-bound
#    source: "Table 2"             # where in the paper
#    text: "the words and figures as printed"
#    supported: false              # only when the kit cannot measure it ...
#    unsupported_reason: "..."     # ... and why
"""

CLAIMS_CSV = (
    "model,path,device,batch,metric,value,unit,tolerance,tolerance_reason,class,source,text,"
    "label,supported,unsupported_reason,note\n"
)

README = """\
# Checking {name}

A study folder made by `qkit init`: the paper's models, its claims, and the run that checks them.
Commands below run in this folder. Keep other `*.json` files (configs, checkpoints) in subfolders:
every `*.json` here is read as a claims file.

1. **Models.** Edit `models.yaml`: one entry per model the paper names (a local checkpoint
   directory, or a config.json alone for random weights). Check what the kit derived and which
   paths apply: `qkit reproduce --models-file models.yaml --paths torch-fp32 --devices cpu --out runs/try`
   prints it first.
2. **Claims.** Transcribe every figure into `claims.yaml` (or `claims.csv`, with `--number`,
   `--title`, `--source` on the command line), quoting the paper in `text`. Map the paper's methods
   to kit paths honestly; a method the kit does not have is `supported: false` with the reason.
   `qkit claims import claims.yaml` checks and writes `NNN_<hash>.json` here; a bad row is
   reported with its line number.
3. **Run.** `qkit reproduce --models-file models.yaml --paths PATHS --devices cpu --out runs/MACHINE`.
4. **Judge.** `qkit validate --expected . --results runs/MACHINE --json runs/MACHINE/verdicts.json`
   and `qkit audit --expected .`.
5. **Say what held.** List here which claims passed, failed or could not be checked, and why.
"""


@click.command("init")
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--number", default=100, show_default=True, type=click.IntRange(0, 999), help="The claims file's number.")
def init(directory: Path, number: int) -> None:
    """Scaffold a study folder: models.yaml, claims.yaml, claims.csv and a README with the recipe."""
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise BadInput(f"{directory} exists and is not an empty directory; qkit init writes a new one")
    directory.mkdir(parents=True, exist_ok=True)
    files = {
        "models.yaml": MODELS_YAML,
        "claims.yaml": CLAIMS_YAML.format(number=number),
        "claims.csv": CLAIMS_CSV,
        "README.md": README.format(name=directory.name),
    }
    for name, text in files.items():
        (directory / name).write_text(text, encoding="utf-8")
    click.echo(f"qkit init: {directory}: {', '.join(files)} (next: see {directory / 'README.md'})")
