#!/usr/bin/env python3
"""Install one of docker/requirements-*.lock exactly as pinned: used inside the images' builds.

    python install_lock.py LOCK            # pip install, one step per index, --no-deps each
    python install_lock.py LOCK --print    # only print the pip commands

A lock line is ``name==version``, optionally followed by ``# index: URL; resolve-as: REQ``. Lines
without an index come from PyPI in one ``pip install --no-deps --only-binary=:all: -r`` step;
each line with an index is installed by its own step with ``--index-url URL``, so that index can
serve that one package and nothing else. The lock is closed (check_locks.py proves it), so
``--no-deps`` everywhere means pip installs what the lock says and nothing more.

Standard library only, Python >= 3.8: it runs on the images' interpreters before anything else
is installed, and check_locks.py imports its parser.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass

_PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[A-Za-z0-9.+!_-]+)$")


def canonical(name: str) -> str:
    """PEP 503 normalised project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Pin:
    name: str
    version: str
    index: str | None = None
    resolve_as: str | None = None
    line_no: int = 0

    @property
    def key(self) -> str:
        return canonical(self.name)

    @property
    def requirement(self) -> str:
        return f"{self.name}=={self.version}"


class LockError(ValueError):
    """A lock line that is not ``name==version [# annotations]``."""


def parse_annotations(comment: str) -> dict[str, str]:
    """``index: URL; resolve-as: REQ`` -> {"index": URL, "resolve-as": REQ}; other text ignored."""
    found: dict[str, str] = {}
    for part in comment.split(";"):
        key, sep, value = part.strip().partition(":")
        key = key.strip().lower()
        if sep and key in ("index", "resolve-as"):
            found[key] = value.strip()
    return found


def parse_lock(text: str) -> list[Pin]:
    pins: list[Pin] = []
    for no, raw in enumerate(text.splitlines(), 1):
        body, _, comment = raw.partition("#")
        body = body.strip()
        if not body:
            continue
        m = _PIN.match(body)
        if not m:
            raise LockError(f"line {no}: not an exact pin (name==version): {raw.strip()!r}")
        notes = parse_annotations(comment)
        pins.append(Pin(m["name"], m["version"], notes.get("index"), notes.get("resolve-as"), no))
    return pins


def plan(pins: list[Pin], pip: list[str], pypi_file: str) -> list[list[str]]:
    """The pip commands that install ``pins``: PyPI first, then one per external pin."""
    common = ["install", "--no-cache-dir", "--no-deps", "--only-binary=:all:"]
    steps = [[*pip, *common, "-r", pypi_file]] if any(p.index is None for p in pins) else []
    for p in pins:
        if p.index is not None:
            steps.append([*pip, *common, "--index-url", p.index, p.requirement])
    return steps


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("lock")
    ap.add_argument("--print", dest="print_only", action="store_true", help="print the commands only")
    args = ap.parse_args(argv)
    with open(args.lock, encoding="utf-8") as fh:
        try:
            pins = parse_lock(fh.read())
        except LockError as exc:
            print(f"install_lock: {args.lock}: {exc}", file=sys.stderr)
            return 2
    pip = [sys.executable, "-m", "pip"]
    with tempfile.TemporaryDirectory() as tmp:
        pypi_file = os.path.join(tmp, "pypi.txt")
        with open(pypi_file, "w", encoding="utf-8") as fh:
            fh.writelines(f"{p.requirement}\n" for p in pins if p.index is None)
        for cmd in plan(pins, pip, pypi_file):
            print("+", shlex.join(cmd), flush=True)
            if not args.print_only:
                subprocess.run(cmd, check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
