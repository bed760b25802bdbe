"""Cross-check the transcription in ``expected/`` against the seed text it came from.

The seed files publish the 64-row tables twice over (seed 001 as pandas pivot tables and an
architecture summary, seed 003 as markdown tables). Every table-derived claim carries a
``table_cell`` locator (table title, published row label, published column header); this module
parses the seed text independently and reports every cell whose value, model or precision label
disagrees with its claim, and every cell or claim left without a partner.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from kit.claims.load import Claim, ClaimSet
from kit.models.registry import MODELS

# Study ids name themselves (the registry's ids); the seeds also use display names, truncated ids
# (seed 003) and architecture labels (seed 001, kept in the registry). One table, so a reviewer can
# see every mapping we made.
STUDY_IDS: tuple[str, ...] = tuple(MODELS)

PUBLISHED_NAMES: dict[str, str] = {
    **{sid: sid for sid in STUDY_IDS},
    # seed 003 truncates three ids
    "deit-base-distilled-384": "deit-base-distilled-384-edge",
    "deit-small-distilled-224": "deit-small-distilled-224-edge",
    "vit-base-patch32-special": "vit-base-patch32-specialized",
    # seed 001 architecture labels: the registry keeps each model's label
    **{spec.published_architecture: spec.id for spec in MODELS.values() if spec.published_architecture},
    # seeds 000 and 002 display names
    "ViT-Huge": "vit-huge-patch14-2020",
    "ViT-Large": "vit-large-patch16-2020",
    "DINOv2-Large": "dinov2-large-2023",
    "DINOv2-Base": "dinov2-base-2023",
    "BEiT-Large": "beit-large-2021",
    "BEiT-Base": "beit-base-pt22k-2021",
    "ViT-Base-384": "vit-base-384-production",
    "ViT-Base-224": "vit-base-224-production",
    "DINO-ViT-Base": "dino-vitb16-production",
    "DINO-ViT-Small": "dino-vits16-production",
    "DeiT-Base-Distilled": "deit-base-distilled-384-edge",
    "DeiT-Small-Distilled": "deit-small-distilled-224-edge",
    "DeiT-Tiny": "deit-tiny-ultra-efficient",
    "MobileViT-Small": "mobilevit-small-edge",
    "MobileViT-XXS": "mobilevit-xxs-edge",
}

# Column headers of the seed tables -> the study's precision label.
COLUMN_LABELS: dict[str, str] = {
    "fp32": "fp32",
    "fp16": "fp16",
    "int8_bitsandbytes": "int8_bitsandbytes",
    "int4_nf4": "int4_nf4",
    "FP32": "fp32",
    "FP16": "fp16",
    "INT8": "int8_bitsandbytes",
    "INT4": "int4_nf4",
}


@dataclass(frozen=True)
class SeedCell:
    """One numeric cell of a seed table: where it is and what it says."""

    source_file: str
    table: str
    row: str
    column: str
    value: float


def read_seed(path: Path) -> str:
    """Seed text with its literal ``\\n`` sequences turned into line breaks (seed 001 has them)."""
    return path.read_text(encoding="utf-8", errors="replace").replace("\\n", "\n")


def _number(token: str) -> float | None:
    cleaned = token.strip().strip("*").rstrip("x%").replace(",", "")
    cleaned = cleaned.lstrip("+")
    try:
        return float(cleaned)
    except ValueError:
        return None


def _section_lines(text: str, heading: str) -> list[str]:
    """Lines after ``heading`` up to the next markdown heading."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.strip() == heading:
            body = []
            for nxt in lines[i + 1 :]:
                if nxt.startswith("#"):
                    break
                body.append(nxt)
            return body
    return []


PIVOT_TABLES_001: tuple[str, ...] = (
    "Latency (ms) - Batch Size 1",
    "Speedup vs FP32",
    "Peak Memory (MB) - Batch Size 1",
)


def parse_pivot_table(source_file: str, text: str, title: str) -> list[SeedCell]:
    """A pandas pivot table as printed by seed 001: a ``precision`` header, then one row a model."""
    body = [line for line in _section_lines(text, f"### {title}") if line.strip()]
    header = next((line.split()[1:] for line in body if line.split()[:1] == ["precision"]), [])
    cells = []
    for line in body:
        parts = line.split()
        if len(parts) != len(header) + 1 or parts[0] in ("precision", "model_name"):
            continue
        for column, token in zip(header, parts[1:]):
            value = _number(token)
            if value is not None:
                cells.append(SeedCell(source_file, title, parts[0], column, value))
    return cells


ARCH_TABLE_001 = "ARCHITECTURE SUMMARY"
ARCH_COLUMNS_001: tuple[str, ...] = (
    "latency_ms",
    "speedup",
    "peak_memory_mb",
    "memory_reduction_pct",
    "simulated_accuracy",
    "parameters",
)


def parse_arch_summary(source_file: str, text: str) -> list[SeedCell]:
    """Seed 001's architecture summary: the architecture label appears on the first of its 4 rows."""
    start = text.find(ARCH_TABLE_001)
    if start < 0:
        return []
    block = text[start:].split("\n## ", 1)[0]
    row_re = re.compile(r"^(\S+)?\s+(fp16|fp32|int4_nf4|int8_bitsandbytes)((?:\s+[-\d.]+){6})\s*$")
    cells: list[SeedCell] = []
    current = ""
    for line in block.splitlines():
        match = row_re.match(line)
        if not match:
            continue
        current = match.group(1) or current
        row = f"{current} {match.group(2)}"
        for column, token in zip(ARCH_COLUMNS_001, match.group(3).split()):
            value = _number(token)
            if value is not None:
                cells.append(SeedCell(source_file, ARCH_TABLE_001, row, column, value))
    return cells


MARKDOWN_TABLES_003: tuple[str, ...] = (
    "Latency Analysis (Batch Size 1)",
    "Memory Usage Analysis (Batch Size 1)",
    "Throughput Analysis (Samples per Second)",
)


def parse_markdown_table(source_file: str, text: str, title: str) -> list[SeedCell]:
    """A markdown table under ``### title``; the first column names the row."""
    rows = [line for line in _section_lines(text, f"### {title}") if line.strip().startswith("|")]
    if len(rows) < 3:
        return []
    header = [cell.strip() for cell in rows[0].strip().strip("|").split("|")]
    cells = []
    for line in rows[2:]:
        parts = [cell.strip() for cell in line.strip().strip("|").split("|")]
        for column, token in zip(header[1:], parts[1:]):
            value = _number(token)
            if value is not None:
                cells.append(SeedCell(source_file, title, parts[0], column, value))
    return cells


def seed_table_cells(seeds_dir: Path) -> list[SeedCell]:
    """Every numeric cell of the 64-row tables in seeds 001 and 003."""
    cells: list[SeedCell] = []
    for path in sorted(seeds_dir.glob("001_*.txt")):
        text = read_seed(path)
        for title in PIVOT_TABLES_001:
            cells += parse_pivot_table(path.name, text, title)
        cells += parse_arch_summary(path.name, text)
    for path in sorted(seeds_dir.glob("003_*.txt")):
        text = read_seed(path)
        for title in MARKDOWN_TABLES_003:
            cells += parse_markdown_table(path.name, text, title)
    return cells


def _row_model(row: str) -> str | None:
    return PUBLISHED_NAMES.get(row.split()[0])


def _column_label(cell: SeedCell) -> str | None:
    if cell.table == ARCH_TABLE_001:
        return cell.row.split()[-1]
    head = cell.column.split()[0] if cell.column else ""
    return COLUMN_LABELS.get(head)


def _check_cell(cell: SeedCell, claim: Claim) -> list[str]:
    problems = []
    where = f"{cell.source_file} / {cell.table} / {cell.row} / {cell.column}"
    if not isinstance(claim.value, (int, float)) or abs(float(claim.value) - cell.value) > 1e-9:
        problems.append(f"{where}: seed says {cell.value}, claim {claim.id} says {claim.value!r}")
    model = _row_model(cell.row)
    if claim.subject.model != model:
        problems.append(f"{where}: row maps to {model}, claim {claim.id} names {claim.subject.model}")
    label = _column_label(cell)
    # Derived columns (speedup/reduction/improvement) carry the label of the path they describe.
    if label is not None and claim.published_label != label:
        problems.append(f"{where}: column label {label}, claim {claim.id} has {claim.published_label}")
    return problems


def check_transcription(claims: ClaimSet | Iterable[Claim], seeds_dir: Path) -> list[str]:
    """Every mismatch between the seed tables and the table-derived claims (empty when all agree)."""
    located: dict[tuple[str, str, str, str], Claim] = {}
    problems: list[str] = []
    for claim in claims:
        if claim.table_cell is None:
            continue
        key = (claim.source_file, claim.table_cell.table, claim.table_cell.row, claim.table_cell.column)
        if key in located:
            problems.append(f"{claim.id} and {located[key].id} point at the same seed cell {key}")
        located[key] = claim
    seen = set()
    for cell in seed_table_cells(seeds_dir):
        key = (cell.source_file, cell.table, cell.row, cell.column)
        seen.add(key)
        claim = located.get(key)
        if claim is None:
            problems.append(f"{' / '.join(key)}: value {cell.value} has no claim")
            continue
        problems += _check_cell(cell, claim)
    for key, claim in located.items():
        if key not in seen and key[0][:3] in ("001", "003"):
            problems.append(f"{claim.id}: its table_cell {key} is not a numeric cell of the seed")
    return problems
