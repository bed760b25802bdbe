"""Optional third-party packages of a rule: imported, or the rule is skipped with the reason.

Only for packages outside the kit that a machine may legitimately lack. The kit's own modules (and
its required dependencies) are imported plainly at the top of a module: a bug there must fail
loudly, never switch a rule off. A skip is never silent: the runner reports it as an ``info``
finding of kind ``skipped`` naming the rule and the missing package.
"""

from __future__ import annotations

import importlib
from types import ModuleType


class RuleSkipped(Exception):
    """Raised by a rule that cannot run here; ``str`` says why (one line)."""


def optional_module(name: str, needed_for: str) -> ModuleType:
    """``import name``, or raise `RuleSkipped` when the package itself is not installed.

    Only the absence of ``name``'s own top-level package is a skip: a ``ModuleNotFoundError`` for
    anything else (a module the package itself imports, a typo in the kit) propagates, because
    that is a broken installation or a bug, not a missing option.
    """
    if name.split(".")[0] == "kit":
        raise ValueError(f"{name} is part of the kit: import it plainly, it is not optional")
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.split(".")[0] != name.split(".")[0]:
            raise
        raise RuleSkipped(f"{needed_for} needs the optional package {name!r}, which is not installed") from exc
