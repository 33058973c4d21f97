"""Validate submitted task data against the task's JSON Schema, field by field."""
from __future__ import annotations

from typing import Any

from jsonschema import FormatChecker
from jsonschema.exceptions import SchemaError
from jsonschema.validators import validator_for

from core.errors import ValidationError


def _pointer(parts: Any) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def form_errors(schema: dict | None, data: dict) -> list[dict[str, str]]:
    """Return ``[{"field": <JSON pointer>, "message": ...}]`` for every problem (empty if valid).

    A missing required property is reported on the property itself
    (``/reason``), not on the object that lacks it, so a form can show the
    message next to the field.
    """
    if not schema:
        return []
    cls = validator_for(schema)
    try:
        cls.check_schema(schema)
    except SchemaError as exc:
        return [{"field": "", "message": f"the task's form schema is invalid: {exc.message}"}]
    errors: list[dict[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for error in sorted(cls(schema, format_checker=FormatChecker()).iter_errors(data),
                        key=lambda e: list(map(str, e.absolute_path))):
        path = list(error.absolute_path)
        if error.validator == "required" and isinstance(error.instance, dict):
            for name in error.validator_value:
                if name not in error.instance:
                    item = (_pointer([*path, name]), "This field is required.")
                    if item not in seen:
                        seen.add(item)
                        errors.append({"field": item[0], "message": item[1]})
            continue
        message = error.message
        if error.validator == "oneOf" and isinstance(error.validator_value, list):
            allowed = [o.get("const") for o in error.validator_value if isinstance(o, dict) and "const" in o]
            if allowed:
                message = f"{error.instance!r} is not one of {', '.join(map(repr, allowed))}."
        item = (_pointer(path), message)
        if item not in seen:
            seen.add(item)
            errors.append({"field": item[0], "message": item[1]})
    return errors


def form_validate(schema: dict | None, data: dict) -> None:
    """Raise ``ValidationError`` with field-level ``details`` if ``data`` does not fit ``schema``."""
    errors = form_errors(schema, data)
    if errors:
        raise ValidationError("the form has errors", details=errors)
