"""Read-mostly admin views for operators: instances, tasks, jobs, incidents, audit.

Changes go through the service layer (and the web pages), never the admin:
every model here is read-only so the admin cannot bypass locks and audit.
"""
from django.contrib import admin

from .models import Activity, AuditEvent, HumanTask, Incident, Job, ProcessInstance


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(ProcessInstance)
class ProcessInstanceAdmin(ReadOnlyAdmin):
    list_display = ("id", "definition", "business_key", "status", "version", "started_by", "started_at", "ended_at")
    list_filter = ("status", "definition__process_key")
    search_fields = ("business_key",)
    exclude = ("state",)


@admin.register(HumanTask)
class HumanTaskAdmin(ReadOnlyAdmin):
    list_display = ("id", "instance", "element_id", "name", "lane", "status", "completed_by", "decision")
    list_filter = ("status", "lane")


@admin.register(Job)
class JobAdmin(ReadOnlyAdmin):
    list_display = ("id", "instance", "element_id", "connector", "status", "attempt", "max_attempts", "run_at")
    list_filter = ("status", "connector")


@admin.register(Incident)
class IncidentAdmin(ReadOnlyAdmin):
    list_display = ("id", "instance", "element_id", "error_type", "status", "created_at")
    list_filter = ("status", "error_type")


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ("chain", "seq", "command", "actor_name", "element_id", "created_at")
    list_filter = ("command",)


@admin.register(Activity)
class ActivityAdmin(ReadOnlyAdmin):
    list_display = ("instance", "element_id", "element_type", "state", "started_at", "ended_at")
