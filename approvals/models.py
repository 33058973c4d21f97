"""What approvals keeps besides the engine's rows: who handed a task to whom.

``Delegation`` also carries the ``approvals.override_sod`` permission: a user
holding it may override a separation-of-duties rule, with a reason.
"""
from __future__ import annotations

from django.conf import settings
from django.db import models

from processes.models import HumanTask


class Delegation(models.Model):
    """One hand-over of a task from one person to another (the audit trail has it too)."""

    task = models.ForeignKey(HumanTask, on_delete=models.CASCADE, related_name="delegations")
    from_user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                  related_name="+")
    to_user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    by_user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                related_name="+")
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        permissions = [("override_sod", "May override separation of duties with a reason")]

    def __str__(self) -> str:
        return f"task {self.task_id}: {self.from_user_id} -> {self.to_user_id}"
