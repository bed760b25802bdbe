"""Where a cell runs, kept apart from what it measures (optimum-benchmark's launcher cut).

- ``InlineExecutor``: in this process (tests, debugging, ``qkit bench --inline``).
- ``ProcessExecutor``: each task in a fresh child process with a timeout, so a crash, hang or
  OOM kill is one failed cell and the run goes on. Children come from a ``forkserver`` that has
  imported torch and transformers once (no per-cell import cost, and no OpenMP pool inherited
  through fork because the server never runs an op). The parent *blocks* on the child's pipe
  (``Connection.poll(timeout)`` is a select, not a spin), so it does not compete for the cores
  while the child measures: optimum-benchmark 0.6.0's process launcher busy-waits in its parent
  and made latencies 1.6-3.4x slower on a 2-core machine.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
from collections.abc import Callable
from typing import Any

_PRELOAD = ["torch", "transformers", "numpy", "kit.run.cell"]
CHILD_ENV = "QKIT_CELL_PROCESS"


class TaskCrashed(Exception):
    """The child died (signal, OOM kill, os._exit) or timed out; str says which."""


class InlineExecutor:
    name = "inline"

    def call(self, fn: Callable[..., Any], *args: Any, timeout_s: float | None = None) -> Any:
        return fn(*args)

    def close(self) -> None:
        return None


def _child_main(conn: Any, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    # The child ignores SIGINT: Ctrl-C is the parent's to handle (it kills the child and keeps
    # every finished cell).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ[CHILD_ENV] = "1"  # tells the memory tracker its peak RSS is this cell's alone
    quiet_library_output()
    try:
        result = fn(*args)
        conn.send(("ok", result))
    except BaseException as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def quiet_library_output() -> None:
    """transformers' and the hub's per-load progress bars, and bitsandbytes' per-import kernel
    notice, would fill the run's log cell after cell; what they say is not lost (see each)."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from kit.paths.bnb_support import quiet_import_notice

    quiet_import_notice()
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:
        pass


def run_in_child(
    ctx: Any,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    timeout_s: float | None,
    start: Callable[[Any], None] = lambda proc: proc.start(),
) -> tuple[str, Any]:
    """Run ``fn(*args)`` in a fresh child of ``ctx`` and wait for it without spinning.

    Returns ``("ok", result)``, or ``(outcome, one-line reason)`` with outcome ``"timeout"``,
    ``"error"`` (the child raised) or ``"lost"`` (the child died before answering: signal, OOM
    kill, exit). The child is killed and reaped whatever happens. Callers decide what each
    outcome means (the process executor fails the cell; Ray retries a lost process).
    """
    parent_conn, child_conn = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child_main, args=(child_conn, fn, args), daemon=True)
    start(proc)
    child_conn.close()
    try:
        if not parent_conn.poll(timeout_s):
            return "timeout", f"timed out after {timeout_s:.0f} s"
        try:
            status, payload = parent_conn.recv()
        except EOFError:
            proc.join(5)
            return "lost", _describe_exit(proc.exitcode)
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join(5)
        parent_conn.close()
    if status == "error":
        return "error", f"child raised {payload}"
    return "ok", payload


class ProcessExecutor:
    name = "process"

    def __init__(self, start_method: str = "forkserver") -> None:
        if start_method == "forkserver" and "forkserver" in mp.get_all_start_methods():
            self._ctx = mp.get_context("forkserver")
            self._ctx.set_forkserver_preload(_PRELOAD)
        else:
            self._ctx = mp.get_context("spawn")
        self.start_method = self._ctx.get_start_method()

    def call(self, fn: Callable[..., Any], *args: Any, timeout_s: float | None = None) -> Any:
        outcome, payload = run_in_child(self._ctx, fn, args, timeout_s)
        if outcome != "ok":
            raise TaskCrashed(payload)
        return payload

    def close(self) -> None:
        return None


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "child process did not exit"
    if code < 0:
        sig = -code
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        hint = " (likely the kernel's OOM killer)" if sig == signal.SIGKILL else ""
        return f"child process killed by {name}{hint}"
    return f"child process exited with code {code} before sending a result"


def make_executor(name: str) -> Any:
    if name == "inline":
        return InlineExecutor()
    if name == "process":
        return ProcessExecutor()
    if name == "ray":
        from kit.run.ray_executor import RayExecutor  # optional extra

        return RayExecutor()
    raise KeyError(f"unknown executor {name!r}; valid executors: inline, process, ray")


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1
