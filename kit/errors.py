"""The kit's one error type for bad input, and the one way an exception becomes one line.

Library code raises `BadInput` (an unknown model, a malformed document, a bad option value); the
command line prints ``qkit: error: <message>`` and exits 2. Nothing here imports the rest of the kit.
"""

from __future__ import annotations

ONE_LINE_LIMIT = 300


class BadInput(Exception):
    """Input the kit cannot use. ``str`` is one line naming the problem; the CLI exits 2 on it."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(one_line(message))

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


def one_line(text: object, limit: int = ONE_LINE_LIMIT) -> str:
    """``text`` (a string or an exception) folded onto one line of at most ``limit`` characters.

    An exception reads ``Type: message`` unless it is a `BadInput`, whose message already names the
    problem; an exception without a message is its type's name.
    """
    if isinstance(text, BaseException):
        message = " ".join(str(text).split())
        if isinstance(text, BadInput):
            flat = message
        else:
            flat = f"{type(text).__name__}: {message}" if message else type(text).__name__
    else:
        flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def first_line(exc: BaseException, limit: int = ONE_LINE_LIMIT) -> str:
    """The first non-empty line of an exception's message (its type's name if it has none).

    For libraries whose messages put the cause first and a wall of context after (ONNX Runtime's
    provider errors, bitsandbytes' setup report): the first line is the one a reader needs.
    """
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
