"""Read published process definitions."""
from __future__ import annotations

from django.db.models import OuterRef, QuerySet, Subquery

from core.errors import NotFound

from .models import ProcessDefinition


def definition_get(*, process_key: str, version: int | None = None) -> ProcessDefinition:
    """Return one definition: the given version, or the latest when ``version`` is None.

    Raises ``NotFound`` naming the key (and version) so the API and UI can
    show it as is.
    """
    rows = ProcessDefinition.objects.filter(process_key=process_key)
    if version is not None:
        definition = rows.filter(version=version).first()
        if definition is None:
            known = rows.exists()
            raise NotFound(
                f"process '{process_key}' has no version {version}"
                if known else f"no process definition '{process_key}' has been published"
            )
        return definition
    definition = rows.order_by("-version").first()
    if definition is None:
        raise NotFound(f"no process definition '{process_key}' has been published")
    return definition


def definition_list(*, process_key: str | None = None, latest_only: bool = False) -> QuerySet[ProcessDefinition]:
    """List definitions by key, newest version first; only each key's latest when ``latest_only``."""
    rows = ProcessDefinition.objects.all()
    if process_key is not None:
        rows = rows.filter(process_key=process_key)
    if latest_only:
        newest = ProcessDefinition.objects.filter(process_key=OuterRef("process_key")).order_by("-version")
        rows = rows.filter(version=Subquery(newest.values("version")[:1]))
    return rows.order_by("process_key", "-version")


__all__ = ["definition_get", "definition_list"]
