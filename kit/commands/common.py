"""What every command shares: name lists, the command line as typed, path options, bad input."""

from __future__ import annotations

import json
import shlex
import sys
from typing import Any

from kit.errors import BadInput

__all__ = ["BadInput", "check_names", "checked_path_options", "command_line", "parse_path_options", "split"]


def split(values: tuple[str, ...]) -> list[str]:
    out: list[str] = []
    for v in values:
        out.extend(x for x in v.replace(",", " ").split() if x)
    return out


def quiet_libraries() -> None:
    """For commands that load models in their own process (the runner's availability checks,
    diagnose): bitsandbytes' import notice and transformers' progress bars are quieted as in every
    cell's child. Not at start-up: it imports transformers, which `qkit validate` never needs."""
    from kit.run.child import quiet_library_output

    quiet_library_output()


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


def checked_path_options(
    values: tuple[str, ...], paths: list[str], extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """``--option`` pairs (plus ``extra``, options a command sets itself) checked against the
    families of ``paths`` before any cell starts: an unknown key or a bad value is `BadInput`.
    Returns the raw dict, which travels to each cell (the path reads its typed options from it)."""
    from kit.paths.base import check_path_options

    opts = {**parse_path_options(values), **(extra or {})}
    check_path_options(paths, opts)
    return opts
