"""Read-only admin pages for published definitions (they are immutable once published)."""
from __future__ import annotations

from django.contrib import admin

from .models import DefinitionFile, ProcessDefinition


class DefinitionFileInline(admin.TabularInline):
    model = DefinitionFile
    fields = ("kind", "name")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ProcessDefinition)
class ProcessDefinitionAdmin(admin.ModelAdmin):
    """List and inspect definitions; publishing goes through the upload service, never the admin."""

    list_display = ("process_key", "version", "name", "dialect", "source_name", "uploaded_by", "uploaded_at")
    list_filter = ("dialect",)
    search_fields = ("process_key", "name", "source_name")
    ordering = ("process_key", "-version")
    readonly_fields = (
        "process_key", "name", "version", "content_hash", "dialect", "source_name", "calls", "elements",
        "uploaded_by", "uploaded_at", "bpmn_xml",
    )
    exclude = ("spec_bundle",)
    inlines = [DefinitionFileInline]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
