"""Reads of process instances and the cached specs they run on."""
from __future__ import annotations

from functools import lru_cache
from typing import Any

from bpmn.models import DefinitionFile, ProcessDefinition
from bpmn.parsing import spec_bundle_loads
from core.errors import NotFound

from .models import HumanTask, HumanTaskStatus, ProcessInstance


@lru_cache(maxsize=256)
def _specs_for(definition_id: int, bundle_hash: str) -> tuple[Any, dict[str, Any]]:
    bundle = ProcessDefinition.objects.values_list("spec_bundle", flat=True).get(pk=definition_id)
    return spec_bundle_loads(bundle)


def definition_specs(definition: ProcessDefinition) -> tuple[Any, dict[str, Any]]:
    """Return the parsed specs of a definition, parsed once per process.

    Definitions are immutable, so the cache never goes stale; the content
    hash in the key guards against a reused primary key after a test reset.
    """
    return _specs_for(definition.pk, definition.content_hash)


@lru_cache(maxsize=256)
def _forms_for(definition_id: int, content_hash: str) -> dict[str, Any]:
    import json

    forms: dict[str, Any] = {}
    for name, content in DefinitionFile.objects.filter(
        definition_id=definition_id, kind__in=[DefinitionFile.Kind.FORM, DefinitionFile.Kind.UI_SCHEMA]
    ).values_list("name", "content"):
        try:
            forms[name] = json.loads(content)
        except ValueError:
            continue
    return forms


def definition_forms(definition: ProcessDefinition) -> dict[str, Any]:
    """Return the JSON form files of a definition by file name (cached)."""
    return _forms_for(definition.pk, definition.content_hash)


def instance_get(*, instance_id: int) -> ProcessInstance:
    try:
        return ProcessInstance.objects.select_related("definition").get(pk=instance_id)
    except ProcessInstance.DoesNotExist:
        raise NotFound(f"process instance {instance_id} does not exist") from None


def human_task_get(*, human_task_id: int) -> HumanTask:
    try:
        return HumanTask.objects.get(pk=human_task_id)
    except HumanTask.DoesNotExist:
        raise NotFound(f"task {human_task_id} does not exist") from None


def open_human_tasks(*, instance: ProcessInstance) -> list[HumanTask]:
    return list(instance.human_tasks.filter(status=HumanTaskStatus.OPEN).order_by("id"))
