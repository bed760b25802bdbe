"""Result-document checks: the result kind of `kit.documents` (kept as the results package's entry)."""

from __future__ import annotations

from typing import Any

from kit.documents import DocumentError, check, problem, schemas_dir

SchemaError = DocumentError

__all__ = ["SchemaError", "first_error", "schemas_dir", "validate_result"]


def first_error(doc: Any, schema_name: str = "result.schema.json") -> str | None:
    """One line describing the most relevant violation of ``schema_name``, or None when valid."""
    kind = schema_name.removesuffix(".schema.json")
    return problem(doc, kind)


def validate_result(doc: Any) -> None:
    check(doc, "result")
