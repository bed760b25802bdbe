"""Stand-ins for ``measure_cell`` that misbehave on purpose (imported by the child process)."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from kit.results.store import Cell
from kit.run.cell import RunOptions, measure_cell


def crash_on_fp16(cell: Cell, opts: RunOptions) -> dict[str, Any]:
    """Kill the child hard (as a segfault or the OOM killer would) for fp16 cells."""
    if cell.path == "torch-fp16":
        os.kill(os.getpid(), signal.SIGKILL)
    return measure_cell(cell, opts)


def hang_on_bf16(cell: Cell, opts: RunOptions) -> dict[str, Any]:
    if cell.path == "torch-bf16":
        time.sleep(3600)
    return measure_cell(cell, opts)


def interrupt_on_bf16(cell: Cell, opts: RunOptions) -> dict[str, Any]:
    """Inline use only: behave as if the user pressed Ctrl-C during the bf16 cell."""
    if cell.path == "torch-bf16":
        raise KeyboardInterrupt
    return measure_cell(cell, opts)


def gc_state_in_child() -> dict[str, int]:
    """What a cell's process sees of the collector: how many inherited objects are frozen, and
    whether a cycle made in the process itself is still collected."""
    import gc

    class Node:
        pass

    a, b = Node(), Node()
    a.other, b.other = b, a  # type: ignore[attr-defined]
    del a, b
    return {"frozen": gc.get_freeze_count(), "collected": gc.collect()}
