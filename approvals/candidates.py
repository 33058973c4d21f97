"""Who a new task is for, when it is due and how urgent it is: filled in as the engine opens it.

``tasks_opening`` is registered with ``processes.hooks.on_tasks_opening`` and
sees each new ``HumanTask`` before it is inserted. The engine has already put
the lane (or the declared candidate groups) and static candidate users on it;
here come, from the element's metadata (``bpmn.metadata``):

* ``assignee``: a username (``camunda:assignee`` / ``baton:assignee``) or an
  expression ``=...`` returning one;
* ``baton:candidateUsers`` / ``baton:candidateGroups`` given as ``=expression``
  (a name, a comma-separated string or a list of names). Computed candidate
  users replace the lane (unless candidate groups are declared too);
* SpiffArena's ``lane_owners`` task data (``{"Lane name": ["user", ...]}``)
  adds the owners of the task's lane as candidate users;
* ``due_date``: an ISO 8601 duration from now (``P2D``, ``PT4H``, ``P1W``), an
  ISO datetime, or ``=expression`` returning one of those, a ``datetime``,
  ``date`` or ``timedelta``; ``priority`` as ``=expression`` (an int).

Expressions run in the same sandbox as gateway conditions
(``bpmn.sandbox.evaluate``), over the task's data plus ``requester`` (the
username who started the instance) and the directory helpers
``manager_of(username)`` and ``user_attr(username, name)``. A failing or
empty expression never stops the command: the task keeps its lane/groups (no
assignee, no due date, priority 0) and a ``task_open_note`` event on the
instance's chain says which setting failed and why.
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import replace
from typing import Any

from django.utils import timezone

from bpmn import sandbox
from processes.audit import AuditEntry
from processes.engine import runtime
from processes.models import HumanTask

from . import rules
from .people import active_user, manager_of, user_attr

_NOTES = "_baton_open_notes"
_DURATION = re.compile(r"P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?")
_EXPRESSION_PROPERTIES = {"candidateusers": "candidate_users", "candidategroups": "candidate_groups",
                          "assignee": "assignee", "duedate": "due_date", "priority": "priority"}


class SettingError(ValueError):
    """A task setting (candidates, assignee, due date, priority) that cannot be used."""


def _note(run: Any, task: HumanTask, setting: str, source: str, error: str, fallback: str) -> None:
    run.__dict__.setdefault(_NOTES, []).append(AuditEntry(
        "task_open_note", task_id=task.task_id, element_id=task.element_id,
        payload={"setting": setting, "source": source, "error": error, "fallback": fallback}))


def _settings(meta: dict) -> dict[str, str]:
    """The task's settings as written: ``=expression`` properties win over the parsed metadata."""
    found: dict[str, str] = {}
    for key in ("assignee", "due_date", "priority"):
        if meta.get(key) not in (None, ""):
            found[key] = str(meta[key]).strip()
    for name, value in (meta.get("properties") or {}).items():
        key = _EXPRESSION_PROPERTIES.get(re.sub(r"^(baton|camunda):|[_\-]", "", name.lower()))
        if key and str(value).strip().startswith("="):
            found[key] = str(value).strip()
    return found


def _namespace(run: Any) -> dict[str, Any]:
    started_by = run.instance.started_by
    return {
        "requester": started_by.get_username() if started_by is not None else None,
        "manager_of": lambda username: getattr(manager_of(username), "username", None),
        "user_attr": user_attr,
    }


def _evaluate(source: str, data: dict, extra: dict) -> Any:
    try:
        return sandbox.evaluate(source[1:].strip(), data, extra)
    except sandbox.SandboxError as exc:
        raise SettingError(f"the expression failed: {exc}") from None


def _names(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, (list, tuple, set)) and all(isinstance(v, str) or v is None for v in value):
        return [v.strip() for v in value if v and v.strip()]
    raise SettingError(f"expected a name or a list of names, got {type(value).__name__}")


def _resolve(source: str, data: dict, extra: dict) -> Any:
    return _evaluate(source, data, extra) if source.startswith("=") else source


def due_at_from(value: Any, now: dt.datetime) -> dt.datetime:
    """Turn a due-date setting (duration, datetime, date, ISO text) into an aware datetime."""
    if isinstance(value, dt.timedelta):
        return now + value
    if isinstance(value, dt.datetime):
        return value if timezone.is_aware(value) else timezone.make_aware(value)
    if isinstance(value, dt.date):
        return timezone.make_aware(dt.datetime.combine(value, dt.time()))
    if not isinstance(value, str) or not value.strip():
        raise SettingError(f"expected an ISO 8601 duration or datetime, got {type(value).__name__}")
    text = value.strip()
    match = _DURATION.fullmatch(text.upper())
    if match and text.upper() not in ("P", "PT") and not text.upper().endswith("T"):
        weeks, days, hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
        return now + dt.timedelta(weeks=weeks, days=days, hours=hours, minutes=minutes, seconds=seconds)
    try:
        return due_at_from(dt.datetime.fromisoformat(text), now)
    except ValueError:
        raise SettingError(f"'{text}' is neither an ISO 8601 duration (P2D, PT4H) nor an ISO datetime") from None


def _active_user(username: str) -> Any:
    user = active_user(username)
    if user is None:
        raise SettingError(f"no active user '{username}'")
    return user


def _candidates(run: Any, task: HumanTask, meta: dict, found: dict, data: dict, extra: dict) -> None:
    for key in ("candidate_users", "candidate_groups"):
        source = found.get(key)
        if not source:
            continue
        static = [n for n in (meta.get(key) or []) if not n.startswith("=")]
        try:
            names = _names(_evaluate(source, data, extra))
            if not names:
                raise SettingError("the expression gave no names")
        except SettingError as exc:
            kept = ", ".join(task.candidate_groups + task.candidate_users) or "nobody"
            _note(run, task, key, source, str(exc), f"kept the lane/declared candidates ({kept})")
            continue
        setattr(task, key, list(dict.fromkeys(static + names)))
        if key == "candidate_users" and not (meta.get("candidate_groups") or found.get("candidate_groups")):
            task.candidate_groups = []  # computed people replace the lane
    # a leftover "=..." fragment from an older definition is never a candidate
    task.candidate_users = [n for n in task.candidate_users if not n.startswith("=")]
    task.candidate_groups = [n for n in task.candidate_groups if not n.startswith("=")]


def tasks_opening(run: Any, tasks: list[HumanTask]) -> None:
    """Fill in computed candidates, assignee, due date and priority of newly opened tasks."""
    elements = run.instance.definition.elements or {}
    extra: dict | None = None
    for task in tasks:
        meta = elements.get(task.element_id) or {}
        found = _settings(meta)
        owners = None
        if task.lane or found:
            data = runtime.find_task(run.workflow, task.task_id).data
            owners = data.get("lane_owners") if task.lane else None
        if not found and not isinstance(owners, dict):
            continue
        if isinstance(owners, dict) and isinstance(owners.get(task.lane), list):
            task.candidate_users = list(dict.fromkeys(
                task.candidate_users + [str(n) for n in owners[task.lane] if isinstance(n, str)]))
        if not found:
            continue
        extra = extra if extra is not None else _namespace(run)
        _candidates(run, task, meta, found, data, extra)
        if found.get("assignee"):
            try:
                names = _names(_resolve(found["assignee"], data, extra))
                if len(names) != 1:
                    raise SettingError(f"expected one username, got {len(names)}")
                if names[0].startswith(("${", "#{")):
                    raise SettingError("JUEL expressions are not supported; write =expression")
                task.assignee = _active_user(names[0])
            except SettingError as exc:
                _note(run, task, "assignee", found["assignee"], str(exc),
                      "no assignee: the task waits for its candidates")
        if found.get("due_date"):
            try:
                task.due_at = due_at_from(_resolve(found["due_date"], data, extra), run.now)
            except SettingError as exc:
                _note(run, task, "due_date", found["due_date"], str(exc), "no due date")
        if found.get("priority", "").startswith("="):
            try:
                value = _evaluate(found["priority"], data, extra)
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise SettingError(f"expected a number, got {type(value).__name__}")
                task.priority = int(value)
            except (SettingError, OverflowError, ValueError) as exc:
                _note(run, task, "priority", found["priority"], str(exc), f"priority {task.priority}")


def command_finished(run: Any, entries: list) -> None:
    """Append the notes about task settings, and ``acting_for`` on a stand-in's completion."""
    notes = run.__dict__.pop(_NOTES, None)
    acting = rules.acting_for_current()
    if acting is not None:
        for index, entry in enumerate(entries):
            if entry.command == "task_complete" and "acting_for" not in entry.payload:
                entries[index] = replace(entry, payload={**entry.payload, "acting_for": acting.get_username()})
                break
    if notes:
        entries.extend(notes)
