"""Run one function in a fresh child process and wait for it without spinning.

The one child-process wait that the process executor and the Ray worker share; each maps the
outcome its own way (the process executor fails the cell; Ray retries a lost process).
"""

from __future__ import annotations

import gc
import os
import signal
from collections.abc import Callable
from typing import Any

CHILD_ENV = "QKIT_CELL_PROCESS"


class TaskCrashed(Exception):
    """The child died (signal, OOM kill, os._exit) or timed out; str says which."""


def _child_main(conn: Any, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    # The child ignores SIGINT: Ctrl-C is the parent's to handle (it kills the child and keeps
    # every finished cell).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ[CHILD_ENV] = "1"  # tells the memory tracker its peak RSS is this cell's alone
    quiet_library_output()
    # Everything the child inherited (the forkserver's preloaded torch, transformers, ONNX Runtime:
    # about 490k objects) goes to the permanent generation: a full collection then costs
    # microseconds instead of 0.2 s, and a cell calls gc.collect about 7 times (memory phases,
    # freeing the float model). On the reference 2-core Xeon that was 1.4 s of a 3.6 s ViT-B/16
    # ORT INT8 cell process. What the cell itself allocates is still collected.
    gc.freeze()
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
            return "lost", describe_exit(proc.exitcode)
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join(5)
        parent_conn.close()
    if status == "error":
        return "error", f"child raised {payload}"
    return "ok", payload


def describe_exit(code: int | None) -> str:
    if code is None:
        return "child process did not exit"
    if code < 0:
        sig = -code
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        hint = " (likely the kernel's OOM killer)" if sig == signal.SIGKILL else ""
        return f"child process killed by {name}{hint}"
    return f"child process exited with code {code} before sending a result"
