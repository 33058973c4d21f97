"""Turn a task's JSON Schema into form fields for a template, and posted values back into data."""
from __future__ import annotations

import math
from typing import Any

DECISION = "decision"
REASON = "reason"


def _options(prop: dict) -> list[tuple[str, str]]:
    if isinstance(prop.get("enum"), list):
        return [(str(v), str(v).replace("_", " ").capitalize()) for v in prop["enum"]]
    if isinstance(prop.get("oneOf"), list):
        return [(str(o["const"]), str(o.get("title") or o["const"])) for o in prop["oneOf"]
                if isinstance(o, dict) and "const" in o]
    return []


def _properties(schema: dict | None) -> dict[str, dict]:
    if not isinstance(schema, dict):
        return {}
    props = schema.get("properties")
    return {k: v for k, v in props.items() if isinstance(v, dict)} if isinstance(props, dict) else {}


def _order(schema: dict | None, ui: dict | None) -> list[str]:
    names = list(_properties(schema))
    order = (ui or {}).get("ui:order") if isinstance(ui, dict) else None
    if isinstance(order, list):
        first = [n for n in order if n in names]
        return first + [n for n in names if n not in first]
    return names


def decision_options(schema: dict | None) -> list[tuple[str, str]]:
    """The decision buttons: one per value of the schema's ``decision`` property (empty: one Complete button)."""
    return _options(_properties(schema).get(DECISION) or {})


def errors_by_field(details: Any) -> tuple[dict[str, str], list[str]]:
    """Split ValidationError details into {top-level field: message} and messages for the whole form."""
    fields: dict[str, str] = {}
    general: list[str] = []
    for item in details or []:
        if not isinstance(item, dict):
            general.append(str(item))
            continue
        pointer = str(item.get("field") or "").lstrip("/")
        name = pointer.split("/")[0]
        if name:
            fields.setdefault(name, str(item.get("message") or "Invalid value."))
        else:
            general.append(str(item.get("message") or "Invalid form."))
    return fields, general


def fields_for(schema: dict | None, ui: dict | None, values: dict | None, errors: dict[str, str],
               *, skip: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """One field description per top-level property (in ``ui:order``), with value and error."""
    props = _properties(schema)
    required = set(schema.get("required") or []) if isinstance(schema, dict) else set()
    ui = ui if isinstance(ui, dict) else {}
    values = values or {}
    out = []
    for name in _order(schema, ui):
        if name in skip:
            continue
        prop, hints = props[name], ui.get(name) if isinstance(ui.get(name), dict) else {}
        kind = prop.get("type")
        options = _options(prop)
        if options:
            widget = "select"
        elif kind in ("number", "integer"):
            widget = "number"
        elif kind == "boolean":
            widget = "checkbox"
        elif hints.get("ui:widget") == "textarea":
            widget = "textarea"
        else:
            widget = "text"
        value = values.get(name, prop.get("default", ""))
        out.append({
            "name": name, "id": f"f-{name}", "label": prop.get("title") or name.replace("_", " ").capitalize(),
            "widget": widget, "options": options, "required": name in required,
            "help": prop.get("description") or hints.get("ui:help") or "",
            "value": "" if value is None else value, "checked": value is True,
            "step": "1" if kind == "integer" else "any", "error": errors.get(name, ""),
        })
    return out


def data_from_post(schema: dict | None, post: Any, *, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """Read posted values by the schema's types; empty inputs are left out (so ``required`` catches them)."""
    data: dict[str, Any] = {}
    for name, prop in _properties(schema).items():
        if name in skip:
            continue
        kind = prop.get("type")
        if kind == "boolean":
            data[name] = post.get(name) in ("on", "true", "1")
            continue
        raw = (post.get(name) or "").strip()
        if raw == "":
            continue
        if kind in ("number", "integer"):
            try:
                number = float(raw)
                if not math.isfinite(number):  # NaN, Infinity, 1e999: the schema check names the field
                    data[name] = raw
                    continue
                whole = number.is_integer() and (kind == "integer" or raw.lstrip("+-").isdigit())
                data[name] = int(number) if whole else number  # "5000" stays 5000, not 5000.0
            except ValueError:
                data[name] = raw  # the schema check reports the wrong type next to the field
        else:
            data[name] = raw
    return data
