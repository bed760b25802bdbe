"""What every command shares: name lists, the command line as typed, path options, bad input."""

from __future__ import annotations

import json
import shlex
import sys
from typing import Any

from kit.errors import BadInput

__all__ = ["BadInput", "check_names", "command_line", "parse_path_options", "split"]


def split(values: tuple[str, ...]) -> list[str]:
    out: list[str] = []
    for v in values:
        out.extend(x for x in v.replace(",", " ").split() if x)
    return out


def check_names(kind: str, given: list[str], valid: list[str], hidden: tuple[str, ...] = ()) -> None:
    """``hidden`` names are accepted but not advertised (the tiny test models)."""
    unknown = [g for g in given if g not in valid and g not in hidden]
    if unknown:
        raise BadInput(f"unknown {kind} {', '.join(map(repr, unknown))}; valid {kind}s: {', '.join(valid)}")


def command_line() -> str:
    return "qkit " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def parse_path_options(values: tuple[str, ...]) -> dict[str, Any]:
    """``--option KEY=VALUE`` pairs; a value that parses as JSON is taken as such (1, true, 0.5)."""
    opts: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise BadInput(f"--option takes KEY=VALUE, got {item!r}")
        try:
            opts[key] = json.loads(raw)
        except json.JSONDecodeError:
            opts[key] = raw
    return opts
