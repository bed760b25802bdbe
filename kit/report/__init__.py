"""The report: ``report.md`` with PNG figures, from result documents, verdicts and findings.

``build_report`` is imported lazily so that ``import kit.report`` stays cheap (no matplotlib).
"""

from __future__ import annotations

from typing import Any

__all__ = ["build_report"]


def build_report(*args: Any, **kwargs: Any) -> Any:
    """See `kit.report.markdown.build_report`."""
    from kit.report.markdown import build_report as _build

    return _build(*args, **kwargs)
