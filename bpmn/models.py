"""Immutable, versioned process definitions and the files that come with them."""
from __future__ import annotations

from django.conf import settings
from django.db import models


class Dialect(models.TextChoices):
    SPIFF = "spiff", "SpiffWorkflow / spiff-arena"
    CAMUNDA = "camunda", "Camunda Modeler"
    PLAIN = "bpmn", "Plain BPMN 2.0"


class ProcessDefinition(models.Model):
    """One published version of one executable process.

    Never updated after creation. ``spec_bundle`` is the serialized SpiffWorkflow
    spec of the process *and* of every process it calls, pinned at upload
    (``calls`` maps called process keys to the versions pinned), so instance
    states never carry specs. ``elements`` is the metadata Baton extracted once
    per element (lanes, candidates, connector, forms, ...).
    """

    process_key = models.CharField(max_length=255)
    name = models.CharField(max_length=255, blank=True)
    version = models.PositiveIntegerField()
    content_hash = models.CharField(max_length=64)
    bpmn_xml = models.TextField()
    source_name = models.CharField(max_length=255, blank=True)
    dialect = models.CharField(max_length=16, choices=Dialect.choices, default=Dialect.PLAIN)
    spec_bundle = models.TextField()
    calls = models.JSONField(default=dict, blank=True)
    elements = models.JSONField(default=dict, blank=True)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    uploaded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["process_key", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["process_key", "version"], name="definition_key_version_unique"),
            models.UniqueConstraint(fields=["process_key", "content_hash"], name="definition_key_hash_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.process_key} v{self.version}"


class DefinitionFile(models.Model):
    """A DMN table or JSON-Schema form file uploaded with a definition."""

    class Kind(models.TextChoices):
        DMN = "dmn", "DMN decision table"
        FORM = "form", "JSON-Schema form"
        UI_SCHEMA = "uischema", "Form UI schema"

    definition = models.ForeignKey(ProcessDefinition, on_delete=models.CASCADE, related_name="files")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    name = models.CharField(max_length=255)
    content = models.TextField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["definition", "name"], name="definition_file_name_unique"),
        ]

    def __str__(self) -> str:
        return self.name
