"""The ``qkit`` command line: a click group; each command lives in a module of `kit.commands`.

Exit codes: 0 success, 1 a check failed (validate/audit/env --check), 2 bad input, 3 the kit itself
failed while judging or auditing (a bug, reported as an `error` verdict or finding), 130 Ctrl-C.
A `kit.errors.BadInput` raised anywhere below a command is printed as one line and exits 2.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

from kit.errors import BadInput

# (module, command objects it defines), in help order.
COMMANDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("kit.commands.info", ("models", "env")),
    ("kit.commands.run", ("bench", "reproduce")),
    ("kit.commands.claims", ("claims", "validate", "accuracy")),
    ("kit.commands.audit", ("audit",)),
    ("kit.commands.report", ("report",)),
    ("kit.commands.compare", ("compare",)),
    ("kit.commands.compare_int8", ("compare_int8",)),
    ("kit.commands.diagnose", ("diagnose",)),
    ("kit.commands.merge", ("merge",)),
    ("kit.commands.init", ("init",)),
)


class QkitGroup(click.Group):
    """Turns the library's `BadInput` into ``qkit: error: <one line>`` and exit 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BadInput as exc:
            click.echo(f"qkit: error: {exc}", err=True)
            ctx.exit(exc.exit_code)


@click.group(cls=QkitGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="qkit")
def main() -> None:
    """qkit: re-run a published vision-model quantization study and check its claims."""


def _register_commands() -> None:
    for module, names in COMMANDS:
        mod = importlib.import_module(module)
        for name in names:
            main.add_command(getattr(mod, name, None) or getattr(mod, f"{name}_cmd"))


_register_commands()


if __name__ == "__main__":
    main()
