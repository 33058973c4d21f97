"""What approvals keeps besides the engine's rows.

Who handed a task to whom (``Delegation``), who acts for whom (``StandIn``),
the people directory (``Profile``), the conversation on a task (comments and
attachments), N-of-M votes and in-app notifications. ``Delegation`` also
carries the ``approvals.override_sod`` permission: a user holding it may
override a separation-of-duties rule, with a reason.
"""
from __future__ import annotations

from django.conf import settings
from django.db import models

from processes.models import HumanTask, ProcessInstance


class Delegation(models.Model):
    """One hand-over of a task from one person to another (the audit trail has it too)."""

    task = models.ForeignKey(HumanTask, on_delete=models.CASCADE, related_name="delegations")
    from_user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                  related_name="+")
    # to nobody when a deactivated user's task went back to its candidates (kind "deactivated")
    to_user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                related_name="+")
    by_user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                related_name="+")
    reason = models.TextField(blank=True)
    kind = models.CharField(max_length=16, default="delegate")  # delegate, reassign, deactivated
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        permissions = [("override_sod", "May override separation of duties with a reason")]

    def __str__(self) -> str:
        return f"task {self.task_id}: {self.from_user_id} -> {self.to_user_id}"


class Profile(models.Model):
    """Directory attributes of a person (manager, department, ...) and their notification settings.

    Candidate expressions read these (``manager_of(requester)``); ``attributes``
    holds anything else a directory sync brings. ``notify`` maps a notification
    kind to ``{"app": bool, "email": bool}``; a missing kind means both on.
    """

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="profile")
    manager = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="reports")
    department = models.CharField(max_length=255, blank=True)
    title = models.CharField(max_length=255, blank=True)
    attributes = models.JSONField(default=dict, blank=True)
    notify = models.JSONField(default=dict, blank=True)

    def __str__(self) -> str:
        return f"profile of {self.user_id}"


class StandIn(models.Model):
    """While ``user`` is away (``starts_at``..``ends_at``), ``stand_in`` acts for them."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="stand_ins")
    stand_in = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="standing_in_for")
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField(null=True, blank=True)
    reason = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-starts_at", "-id"]
        indexes = [models.Index(fields=["stand_in", "starts_at"], name="standin_standin_idx")]

    def __str__(self) -> str:
        return f"{self.stand_in_id} for {self.user_id}"


class TaskComment(models.Model):
    """A remark on a task, visible to everyone who can see the task (audited with its hash)."""

    task = models.ForeignKey(HumanTask, on_delete=models.CASCADE, related_name="comments")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    body = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"comment {self.pk} on task {self.task_id}"


class TaskAttachment(models.Model):
    """A file attached to a task: stored outside task data (content-addressed), its SHA-256 in the audit trail."""

    task = models.ForeignKey(HumanTask, on_delete=models.CASCADE, related_name="attachments")
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    filename = models.CharField(max_length=255)
    content_type = models.CharField(max_length=255, blank=True)
    size = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.filename} on task {self.task_id}"


class Vote(models.Model):
    """One person's vote on an N-of-M / quorum task; Baton completes the engine task when the count is reached."""

    task = models.ForeignKey(HumanTask, on_delete=models.CASCADE, related_name="votes")
    voter = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    acting_for = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                   related_name="+")
    outcome = models.CharField(max_length=64)
    reason = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [models.UniqueConstraint(fields=["task", "voter"], name="vote_once_per_task")]

    def __str__(self) -> str:
        return f"{self.voter_id} voted {self.outcome} on task {self.task_id}"


class NotificationKind(models.TextChoices):
    TASK_NEW = "task_new", "New task"
    REMINDER = "reminder", "Reminder"
    ESCALATION = "escalation", "Escalation"
    DECISION = "decision", "Decision"
    STANDIN = "standin", "Stand-in"


class Notification(models.Model):
    """One in-app notice for one person (the inbox shows the unread count); e-mail goes through the job table."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications")
    kind = models.CharField(max_length=16, choices=NotificationKind.choices)
    title = models.CharField(max_length=255)
    body = models.TextField(blank=True)
    url = models.CharField(max_length=255, blank=True)
    task = models.ForeignKey(HumanTask, null=True, blank=True, on_delete=models.CASCADE, related_name="notifications")
    instance = models.ForeignKey(ProcessInstance, null=True, blank=True, on_delete=models.CASCADE,
                                 related_name="notifications")
    created_at = models.DateTimeField(auto_now_add=True)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "read_at"], name="notification_unread_idx")]

    def __str__(self) -> str:
        return f"{self.kind} for {self.user_id}: {self.title}"


class TaskReminder(models.Model):
    """Marks an open task whose reminders went out, so the sweeper's due-task window moves past it."""

    task = models.OneToOneField(HumanTask, primary_key=True, on_delete=models.CASCADE, related_name="reminder")
    sent_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"reminders for task {self.task_id} sent {self.sent_at:%Y-%m-%d %H:%M}"
