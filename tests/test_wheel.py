"""The kit as a wheel: built from a copy of the sources, installed into a bare folder, run from
outside the repository. The installed copy must find its schemas and the study's claims (package
data under ``kit/data``) with no checkout beside it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "results" / "reference" / "cpu-intel-xeon-2core"

pytestmark = pytest.mark.wheel
Completed = subprocess.CompletedProcess
WHERE = "import kit, kit.documents as d; print(kit.__file__); print(d.schemas_dir())"


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 120) -> Completed:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(wheel file, install folder). Built from a copy, so no build/ folder appears in the checkout."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    shutil.copytree(REPO / "kit", src / "kit", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    dist = root / "dist"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    built = _run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(dist), str(src)], root)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (wheel,) = dist.glob("qkit-*.whl")
    target = root / "site"
    done = _run([*pip, "install", "--no-deps", "--no-index", "--target", str(target), str(wheel)], root)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return wheel, target


def test_the_wheel_carries_the_schemas_and_the_claims(installed: tuple[Path, Path]) -> None:
    wheel, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder in ("schemas", "expected"):
        shipped = {p.name for p in (REPO / "kit" / "data" / folder).glob("*.json")}
        assert shipped, folder
        top = {n.rsplit("/", 1)[1] for n in names if n.startswith(f"kit/data/{folder}/") and n.count("/") == 3}
        assert top == shipped, folder
    # Other studies ship too (kit/data/expected/studies/<name>/), outside the bundled study's folder.
    assert any(n.startswith("kit/data/expected/studies/pytorch-vt-tutorial/101_") for n in names)
    assert "kit/py.typed" in names and "kit/documents.py" in names


def _env(target: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QKIT_")}
    env["PYTHONPATH"] = str(target)
    env["MPLBACKEND"] = "Agg"
    return env


def test_the_installed_copy_runs_claims_validate_and_report(installed: tuple[Path, Path], tmp_path: Path) -> None:
    _, target = installed
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = _env(target)
    where = _run([sys.executable, "-c", WHERE], outside, env)
    assert where.returncode == 0, where.stderr
    kit_file, schemas = (Path(line) for line in where.stdout.split())
    assert kit_file.is_relative_to(target) and schemas.is_relative_to(target), where.stdout

    qkit = [sys.executable, "-m", "kit.cli"]
    claims = _run([*qkit, "claims", "--counts"], outside, env)
    assert claims.returncode == 0, claims.stderr[-3000:]
    assert "Traceback" not in claims.stdout + claims.stderr and "004_" in claims.stdout

    verdicts = tmp_path / "verdicts.json"
    validate = _run([*qkit, "validate", "--results", str(REFERENCE), "--json", str(verdicts)], outside, env, 300)
    assert validate.returncode in (0, 1), validate.stderr[-3000:]  # 1: claims that fail here are fine
    assert "Traceback" not in validate.stdout + validate.stderr
    assert verdicts.is_file()

    out = tmp_path / "report"
    args = ["report", "--results", str(REFERENCE), "--out", str(out), "--verdicts", str(verdicts)]
    report = _run([*qkit, *args], outside, env, 300)
    assert report.returncode == 0, report.stderr[-3000:]
    assert "Traceback" not in report.stdout + report.stderr
    assert (out / "report.md").is_file() and "report:" in report.stdout
