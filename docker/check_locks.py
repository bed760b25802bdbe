#!/usr/bin/env python3
"""The images' locks: compile them, and check them without an engine (no Docker daemon needed).

    python docker/check_locks.py compile cuda|cpu   write docker/requirements-IMAGE.lock from .in
    python docker/check_locks.py check [IMAGE...]   static checks + resolution against the index
        --offline      static checks only
        --no-cache     ask the index even if this lock already resolved

Static checks (no network): every lock line is an exact pin, sorted, no duplicates; the lock
satisfies its .in file and the kit's pyproject requirements (with the aliases below); the
Dockerfile installs the lock through install_lock.py, on the Python the lock was resolved for.

Resolution: pip's dry-run resolver (`pip install --dry-run --ignore-installed --report`) asks PyPI
for every pin of the lock at once, with the image's interpreter version (a real CPython of that
version when one is found here, so environment markers are evaluated right), its ABI, manylinux
x86_64 platform tags up to the image's glibc, and binary wheels only. It passes when every pin
resolves and the resolver needs nothing that the lock doesn't pin (the lock is closed). Pins
installed from another index (``# index:``) are checked there when it is reachable, else from a
local copy of that index's wheel (QKIT_LOCAL_WHEELS, default /opt/wheels) or through their
``resolve-as`` stand-in, and the report says which. A pass is remembered under
.cache/qkit-docker/, keyed by the lock's hash, so repeated runs don't ask again.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from install_lock import LockError, Pin, canonical, parse_annotations, parse_lock  # noqa: E402

# Bump when the resolution logic changes, so cached passes are not trusted across versions.
CHECK_VERSION = "1"
PYPI = os.environ.get("QKIT_PYPI_INDEX", "https://pypi.org/simple")
CACHE_DIR = ROOT / ".cache" / "qkit-docker"


@dataclass(frozen=True)
class Image:
    name: str
    python: str  # "3.10"
    glibc: tuple[int, int]  # newest manylinux_X_Y the image's libc accepts
    dockerfile: Path
    infile: Path
    lock: Path
    # pyproject extras the image provides, and how it provides the kit's requirements
    extras: tuple[str, ...]
    aliases: dict[str, str] = field(default_factory=dict)  # pyproject name -> lock name
    omitted: dict[str, str] = field(default_factory=dict)  # pyproject name -> why not installed
    # what the Dockerfile must contain to run the lock's Python (a FROM tag or interpreter name)
    python_marker: str = ""

    @property
    def cp(self) -> str:
        return "cp" + self.python.replace(".", "")


IMAGES: dict[str, Image] = {
    "cuda": Image(
        name="cuda",
        python="3.10",
        glibc=(2, 35),  # Ubuntu 22.04
        dockerfile=HERE / "Dockerfile.cuda",
        infile=HERE / "requirements-cuda.in",
        lock=HERE / "requirements-cuda.lock",
        extras=("onnx", "bnb", "report", "gpu"),
        aliases={"onnxruntime": "onnxruntime-gpu"},
        omitted={"onnxscript": "serves torch>=2.5's dynamo ONNX exporter; torch 2.1 uses TorchScript"},
        python_marker="python3.10",
    ),
    "cpu": Image(
        name="cpu",
        python="3.11",
        glibc=(2, 36),  # Debian bookworm
        dockerfile=HERE / "Dockerfile.cpu",
        infile=HERE / "requirements-cpu.in",
        lock=HERE / "requirements-cpu.lock",
        extras=("onnx", "bnb", "report", "gpu"),
        python_marker="FROM python:3.11",
    ),
}


# ---------------------------------------------------------------------------------------------
# Reading .in files (ranges allowed) and pyproject


@dataclass(frozen=True)
class InLine:
    requirement: str  # as written, without the comment
    name: str
    index: str | None
    resolve_as: str | None


_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def parse_in(text: str) -> list[InLine]:
    out = []
    for raw in text.splitlines():
        body, _, comment = raw.partition("#")
        body = body.strip()
        if not body:
            continue
        m = _NAME.match(body)
        if not m:
            raise LockError(f"cannot read requirement {raw.strip()!r}")
        notes = parse_annotations(comment)
        out.append(InLine(body, m[1], notes.get("index"), notes.get("resolve-as")))
    return out


def _packaging():
    try:
        from packaging.requirements import Requirement
        from packaging.version import Version
    except ImportError:  # pragma: no cover - packaging ships with pip's vendored copy only
        return None
    return Requirement, Version


def _satisfies(pins: dict[str, Pin], requirement: str, aliases: dict[str, str]) -> str | None:
    """None if some pin satisfies ``requirement``; else the reason it doesn't."""
    pk = _packaging()
    if pk is None:
        return None
    Requirement, Version = pk
    req = Requirement(requirement)
    key = canonical(aliases.get(canonical(req.name), req.name))
    pin = pins.get(key)
    if pin is None:
        return f"{requirement}: not in the lock"
    version = Version(pin.version)
    if req.specifier and not req.specifier.contains(version, prereleases=True):
        return f"{requirement}: the lock pins {pin.requirement}"
    return None


def pyproject_requirements(image: Image) -> list[str]:
    try:
        import tomllib
    except ImportError:  # Python 3.10 without tomli: skip this check
        return []
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project = data.get("project", {})
    reqs = list(project.get("dependencies", []))
    optional = project.get("optional-dependencies", {})
    for extra in image.extras:
        reqs.extend(optional.get(extra, []))
    return reqs


# ---------------------------------------------------------------------------------------------
# Static checks


def static_problems(image: Image) -> list[str]:
    problems: list[str] = []

    def rel(path: Path) -> str:
        return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)

    try:
        pins_list = parse_lock(image.lock.read_text())
    except (OSError, LockError) as exc:
        return [f"{rel(image.lock)}: {exc}"]
    pins: dict[str, Pin] = {}
    for p in pins_list:
        if p.key in pins:
            problems.append(f"{rel(image.lock)}:{p.line_no}: {p.name} pinned twice")
        pins[p.key] = p
    keys = [p.key for p in pins_list]
    if keys != sorted(keys):
        problems.append(f"{rel(image.lock)}: pins are not sorted by name (compile writes them sorted)")
    for p in pins_list:
        if p.index and not p.index.startswith("https://"):
            problems.append(f"{rel(image.lock)}:{p.line_no}: {p.name}: index must be an https URL")

    # The lock satisfies its .in, and carries the same index annotations.
    try:
        wanted = parse_in(image.infile.read_text())
    except (OSError, LockError) as exc:
        problems.append(f"{rel(image.infile)}: {exc}")
        wanted = []
    for line in wanted:
        why = _satisfies(pins, line.requirement, {})
        if why:
            problems.append(f"{rel(image.lock)} vs {rel(image.infile)}: {why}")
            continue
        pin = pins[canonical(line.name)]
        if (pin.index, pin.resolve_as) != (line.index, line.resolve_as):
            problems.append(
                f"{rel(image.lock)}: {pin.name}: annotations differ from {rel(image.infile)} "
                f"(lock: index={pin.index}, resolve-as={pin.resolve_as}; "
                f"in: index={line.index}, resolve-as={line.resolve_as}): recompile"
            )

    # The kit's declared requirements hold in the image.
    for req in pyproject_requirements(image):
        name = canonical(re.split(r"[\s\[<>=!~;]", req, maxsplit=1)[0])
        if name in image.omitted:
            continue
        why = _satisfies(pins, req, image.aliases)
        if why:
            problems.append(f"pyproject.toml vs {rel(image.lock)}: {why}")

    # The Dockerfile installs this lock, through install_lock.py, on the right Python.
    try:
        docker = image.dockerfile.read_text()
    except OSError as exc:
        problems.append(f"{rel(image.dockerfile)}: {exc}")
        return problems
    if image.lock.name not in docker:
        problems.append(f"{rel(image.dockerfile)}: does not use {image.lock.name}")
    if "install_lock.py" not in docker:
        problems.append(f"{rel(image.dockerfile)}: does not install through install_lock.py")
    if image.python_marker not in docker:
        problems.append(
            f"{rel(image.dockerfile)}: the lock is resolved for Python {image.python}, "
            f"but {image.python_marker!r} is not in the Dockerfile"
        )
    for m in re.finditer(r"^FROM\s+(\S+)", docker, re.M):
        ref = m[1]
        if ":" not in ref.split("/")[-1] or ref.endswith(":latest"):
            problems.append(f"{rel(image.dockerfile)}: base image {ref} is not pinned by tag")
    if not re.search(r"^USER\s+(?!root\b|0\b)\S+", docker, re.M):
        problems.append(f"{rel(image.dockerfile)}: no non-root USER")
    if not re.search(r'^ENTRYPOINT\s+\["qkit"\]', docker, re.M):
        problems.append(f'{rel(image.dockerfile)}: ENTRYPOINT is not ["qkit"]')
    return problems


# ---------------------------------------------------------------------------------------------
# Resolution against the index


def reachable(url: str, timeout: float = 8.0) -> bool:
    """True if an HTTP GET of ``url`` answers (any status below 500) within ``timeout``."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status < 500
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except (OSError, ValueError):
        return False


def pypi_reachable() -> bool:
    return reachable(f"{PYPI.rstrip('/')}/pip/")


def _python_version_of(exe: str) -> str | None:
    try:
        out = subprocess.run(
            [exe, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def find_interpreter(version: str) -> str | None:
    """A CPython ``version`` on this machine, so pip evaluates environment markers for it."""
    if f"{sys.version_info[0]}.{sys.version_info[1]}" == version:
        return sys.executable
    candidates = [
        os.environ.get(f"QKIT_PYTHON{version.replace('.', '')}", ""),
        shutil.which(f"python{version}") or "",
        *sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}.*/bin/python{version}"))),
        f"/usr/bin/python{version}",
        f"/usr/local/bin/python{version}",
    ]
    for exe in candidates:
        if exe and os.path.exists(exe) and _python_version_of(exe) == version:
            return exe
    return None


def _pip_env() -> dict[str, str]:
    """This process's environment without pip settings that would add other indexes or caps."""
    keep = {"PIP_CERT", "PIP_CLIENT_CERT", "PIP_DEFAULT_TIMEOUT", "PIP_PROXY", "PIP_TRUSTED_HOST"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") or k in keep}
    env["PIP_CONFIG_FILE"] = os.devnull  # no pip.conf: no local mirrors, no constraints
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    return env


def target_args(image: Image) -> list[str]:
    major, minor = image.glibc
    plats = [f"manylinux_{major}_{m}_x86_64" for m in range(minor, 4, -1)]
    plats += ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]
    args = ["--only-binary=:all:", "--python-version", image.python, "--implementation", "cp", "--abi", image.cp]
    for p in plats:
        args += ["--platform", p]
    return args


def _local_wheel(pin: Pin) -> str | None:
    """A wheel of exactly ``pin`` in QKIT_LOCAL_WHEELS (a local copy of an external index)."""
    dirs = os.environ.get("QKIT_LOCAL_WHEELS", "/opt/wheels").split(os.pathsep)
    for d in dirs:
        for path in sorted(glob.glob(os.path.join(d, "*.whl"))):
            parts = os.path.basename(path)[:-4].split("-")
            if len(parts) >= 5 and canonical(parts[0]) == pin.key and parts[1] == pin.version:
                return path
    return None


@dataclass
class Resolution:
    image: str
    status: str  # "ok" | "fail" | "skip"
    detail: str = ""
    notes: list[str] = field(default_factory=list)
    pins: int = 0
    cached: bool = False

    def line(self) -> str:
        head = f"{self.image}: {self.status.upper()}"
        if self.status == "ok":
            head += f": {self.pins} pins resolve and the lock is closed"
            head += " (cached)" if self.cached else ""
        text = f"{head}{': ' + self.detail if self.detail and self.status != 'ok' else ''}"
        return "\n".join([text, *(f"  - {n}" for n in self.notes)])


def _run_resolver(
    image: Image, requirements: list[str], extra: list[str], interp: str | None, report: Path
) -> subprocess.CompletedProcess:
    req_file = report.with_suffix(".txt")
    req_file.write_text("".join(f"{r}\n" for r in requirements))
    cmd = [sys.executable, "-m", "pip"]
    if interp and interp != sys.executable:
        cmd += ["--python", interp]
    cmd += [
        "install",
        "--dry-run",
        "--ignore-installed",
        "--quiet",
        "--report",
        str(report),
        "--index-url",
        PYPI,
        *target_args(image),
        *extra,
        "-r",
        str(req_file),
    ]
    return subprocess.run(cmd, capture_output=True, text=True, env=_pip_env(), timeout=900)


def _plan_externals(pins: list[Pin], tmp: Path) -> tuple[list[str], list[str], list[str], str | None]:
    """How each external pin enters the resolution: (requirements, pip args, notes, skip reason)."""
    reqs: list[str] = []
    extra: list[str] = []
    notes: list[str] = []
    local_dir = tmp / "local-wheels"
    for p in pins:
        if p.index is None:
            reqs.append(p.requirement)
            continue
        if p.resolve_as:
            reqs.append(p.resolve_as)
            notes.append(
                f"{p.requirement} (from {p.index}): resolved through its stand-in "
                f"{p.resolve_as} on PyPI; that index is checked by the image build"
            )
            continue
        wheel = _local_wheel(p)
        if wheel:
            local_dir.mkdir(exist_ok=True)
            os.symlink(wheel, local_dir / os.path.basename(wheel))
            if "--find-links" not in extra:
                extra += ["--find-links", str(local_dir)]
            reqs.append(p.requirement)
            notes.append(f"{p.requirement}: {p.index} is reached through its local copy {wheel}")
            continue
        if reachable(p.index.rstrip("/") + f"/{p.key}/"):
            extra += ["--extra-index-url", p.index]
            reqs.append(p.requirement)
            notes.append(f"{p.requirement}: resolved on {p.index}")
            continue
        return (
            [],
            [],
            notes,
            (
                f"{p.requirement} comes from {p.index}, which is not reachable from "
                "here, and no local copy of its wheel was found (QKIT_LOCAL_WHEELS)"
            ),
        )
    return reqs, extra, notes, None


def _cache_key(image: Image, interp_exact: bool) -> str:
    h = hashlib.sha256()
    for part in (
        CHECK_VERSION,
        PYPI,
        image.python,
        repr(image.glibc),
        str(interp_exact),
        os.environ.get("QKIT_LOCAL_WHEELS", "/opt/wheels"),
    ):
        h.update(part.encode() + b"\0")
    h.update(image.lock.read_bytes())
    return h.hexdigest()[:24]


def resolve(image: Image, use_cache: bool = True) -> Resolution:
    try:
        pins = parse_lock(image.lock.read_text())
    except (OSError, LockError) as exc:
        return Resolution(image.name, "fail", str(exc))
    interp = find_interpreter(image.python)
    notes = []
    if interp is None:
        notes.append(
            f"no CPython {image.python} found here: markers evaluated for "
            f"{sys.version_info[0]}.{sys.version_info[1]} (set QKIT_PYTHON"
            f"{image.python.replace('.', '')} to a {image.python} interpreter)"
        )
    marker = CACHE_DIR / f"resolve-{image.name}-{_cache_key(image, interp is not None)}.json"
    if use_cache and marker.exists():
        with contextlib.suppress(ValueError, OSError):
            return Resolution(**{**json.loads(marker.read_text()), "cached": True})
    if not pypi_reachable():
        return Resolution(image.name, "skip", f"{PYPI} is not reachable from here")

    with tempfile.TemporaryDirectory(prefix="qkit-locks-") as tmpdir:
        tmp = Path(tmpdir)
        reqs, extra, ext_notes, skip = _plan_externals(pins, tmp)
        notes += ext_notes
        if skip:
            return Resolution(image.name, "skip", skip, notes)
        report = tmp / "report.json"
        proc = _run_resolver(image, reqs, extra, interp, report)
        if proc.returncode != 0:
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-12:])
            return Resolution(image.name, "fail", f"pip could not resolve the lock:\n{tail}", notes)
        installs = json.loads(report.read_text())["install"]

    expected = {p.key: p for p in pins}
    unpinned = []
    for item in installs:
        meta = item["metadata"]
        key = canonical(meta["name"])
        pin = expected.get(key)
        if pin is None:
            unpinned.append(f"{meta['name']}=={meta['version']}")
        elif pin.resolve_as is None and pin.version != meta["version"]:
            unpinned.append(f"{meta['name']}=={meta['version']} (lock: {pin.version})")
    if unpinned:
        return Resolution(
            image.name, "fail", "the lock is not closed; the resolver also needs: " + ", ".join(sorted(unpinned)), notes
        )
    result = Resolution(image.name, "ok", notes=notes, pins=len(pins))
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    tmp_marker = marker.with_suffix(".tmp")
    tmp_marker.write_text(json.dumps({k: v for k, v in result.__dict__.items() if k != "cached"}, indent=1))
    os.replace(tmp_marker, marker)
    return result


# ---------------------------------------------------------------------------------------------
# Compiling a lock from its .in


def compile_lock(image: Image) -> int:
    wanted = parse_in(image.infile.read_text())
    external = {canonical(w.name): w for w in wanted if w.index}
    try:
        ext_pins = [
            parse_lock(
                f"{w.requirement}  # index: {w.index}" + (f"; resolve-as: {w.resolve_as}" if w.resolve_as else "")
            )[0]
            for w in external.values()
        ]
    except LockError as exc:
        print(f"compile: a line with an index must be an exact pin: {exc}", file=sys.stderr)
        return 2
    interp = find_interpreter(image.python)
    if interp is None:
        print(
            f"compile: no CPython {image.python} here (set QKIT_PYTHON"
            f"{image.python.replace('.', '')}); refusing to guess markers",
            file=sys.stderr,
        )
        return 2
    with tempfile.TemporaryDirectory(prefix="qkit-compile-") as tmpdir:
        ext_reqs, extra, notes, skip = _plan_externals(ext_pins, Path(tmpdir))
        if skip:
            print(f"compile: {skip}", file=sys.stderr)
            return 2
        for n in notes:
            print(f"note: {n}")
        reqs = [w.requirement for w in wanted if not w.index] + ext_reqs
        report = Path(tmpdir) / "report.json"
        proc = _run_resolver(image, reqs, extra, interp, report)
        if proc.returncode != 0:
            print(proc.stderr or proc.stdout, file=sys.stderr)
            return 1
        installs = json.loads(report.read_text())["install"]
    lines: dict[str, str] = {}
    for item in installs:
        meta = item["metadata"]
        key = canonical(meta["name"])
        if key in external:
            continue
        lines[key] = f"{key}=={meta['version']}"
    for key, w in external.items():
        notes = f"index: {w.index}" + (f"; resolve-as: {w.resolve_as}" if w.resolve_as else "")
        lines[key] = f"{w.requirement}  # {notes}"
    header = [
        f"# requirements-{image.name}.lock: every Python package of docker/Dockerfile.{image.name}, pinned.",
        f"# Generated by `python docker/check_locks.py compile {image.name}` from {image.infile.name}",
        f"# for CPython {image.python}, manylinux x86_64 (glibc <= {image.glibc[0]}.{image.glibc[1]}),"
        " binary wheels only;",
        f"# checked by `python docker/check_locks.py check {image.name}`. Do not edit by hand.",
        "# Lines with '# index:' are installed from that index by install_lock.py, one step each.",
    ]
    image.lock.write_text("\n".join([*header, *(lines[k] for k in sorted(lines))]) + "\n")
    print(f"wrote {image.lock.relative_to(ROOT)}: {len(lines)} pins")
    return 0


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("compile", help="write a lock from its .in file")
    c.add_argument("image", choices=sorted(IMAGES))
    k = sub.add_parser("check", help="static checks and resolution against the index")
    k.add_argument("images", nargs="*", metavar="IMAGE", help=f"one of {sorted(IMAGES)}; default all")
    k.add_argument("--offline", action="store_true", help="static checks only")
    k.add_argument("--no-cache", action="store_true", help="ask the index even after a cached pass")
    k.add_argument("--strict", action="store_true", help="a skipped resolution fails too")
    args = ap.parse_args(argv)

    if args.cmd == "compile":
        return compile_lock(IMAGES[args.image])
    unknown = [n for n in args.images if n not in IMAGES]
    if unknown:
        ap.error(f"unknown image {unknown[0]!r}; choose from {sorted(IMAGES)}")

    failed = False
    for name in args.images or sorted(IMAGES):
        image = IMAGES[name]
        problems = static_problems(image)
        for p in problems:
            print(f"{name}: static: {p}")
        print(f"{name}: static checks: {'FAIL' if problems else 'OK'}")
        failed |= bool(problems)
        if args.offline:
            continue
        res = resolve(image, use_cache=not args.no_cache)
        print(res.line())
        failed |= res.status == "fail" or (args.strict and res.status == "skip")
    print("check_locks:", "FAIL" if failed else "OK")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
