"""JSON Schema checks for qkit documents (2020-12). Schemas live in the repo's schemas/ folder."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

import jsonschema
from jsonschema import Draft202012Validator


class SchemaError(ValueError):
    """A document broke its schema. ``str`` is one line: where and which rule."""


def schemas_dir() -> Path:
    override = os.environ.get("QKIT_SCHEMAS")
    if override:
        return Path(override)
    packaged = Path(__file__).resolve().parents[2] / "schemas"
    return packaged


@functools.cache
def validator(name: str) -> Draft202012Validator:
    path = schemas_dir() / name
    schema = json.loads(path.read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def first_error(doc: Any, schema_name: str) -> str | None:
    """One line describing the most relevant schema violation, or None when valid."""
    v = validator(schema_name)
    error = jsonschema.exceptions.best_match(v.iter_errors(doc))
    if error is None:
        return None
    pointer = "/" + "/".join(str(p) for p in error.absolute_path)
    message = error.message if len(error.message) < 200 else error.message[:197] + "..."
    return f"at {pointer}: {message} (rule: {error.validator})"


def validate_document(doc: Any, schema_name: str) -> None:
    problem = first_error(doc, schema_name)
    if problem:
        raise SchemaError(f"{schema_name} {problem}")


def validate_result(doc: Any) -> None:
    validate_document(doc, "result.schema.json")
