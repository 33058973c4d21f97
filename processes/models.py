"""Process instances and what they wait on: human tasks, jobs, incidents, audit.

Status fields change only inside the service functions of ``processes.services``,
which lock the instance row first.
"""
from __future__ import annotations

from django.conf import settings
from django.db import models

from bpmn.models import ProcessDefinition


class InstanceStatus(models.TextChoices):
    RUNNING = "running", "Running"
    WAITING = "waiting", "Waiting"
    COMPLETED = "completed", "Completed"
    CANCELLED = "cancelled", "Cancelled"
    SUSPENDED = "suspended", "Suspended"
    INCIDENT = "incident", "Incident"


class ProcessInstance(models.Model):
    """A running (or finished) process.

    ``state`` is the serialized workflow inside Baton's envelope: opaque bytes,
    never ``jsonb`` and never re-encoded (key order matters to SpiffWorkflow).
    ``version`` increments on every command; ``audit_seq``/``audit_head`` are
    the head of this instance's audit chain so deleting the newest events is
    detected. ``data`` is a read-only snapshot of the instance data for display.
    """

    definition = models.ForeignKey(ProcessDefinition, on_delete=models.PROTECT, related_name="instances")
    business_key = models.CharField(max_length=255, blank=True, db_index=True)
    status = models.CharField(max_length=16, choices=InstanceStatus.choices, default=InstanceStatus.RUNNING)
    state = models.BinaryField()
    serializer_version = models.CharField(max_length=32)
    version = models.PositiveIntegerField(default=0)
    data = models.JSONField(default=dict, blank=True)
    next_timer_at = models.DateTimeField(null=True, blank=True, db_index=True)
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    started_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    audit_seq = models.PositiveIntegerField(default=0)
    audit_head = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["status", "definition"], name="instance_status_def_idx")]

    def __str__(self) -> str:
        return f"{self.definition.process_key}#{self.pk}"


class HumanTaskStatus(models.TextChoices):
    OPEN = "open", "Open"
    COMPLETED = "completed", "Completed"
    CANCELLED = "cancelled", "Cancelled"


class HumanTask(models.Model):
    """A user or manual task waiting for a person: the truth of who decided what."""

    instance = models.ForeignKey(ProcessInstance, on_delete=models.CASCADE, related_name="human_tasks")
    task_id = models.UUIDField()
    element_id = models.CharField(max_length=255)
    name = models.CharField(max_length=255, blank=True)
    kind = models.CharField(max_length=16, default="user")
    lane = models.CharField(max_length=255, blank=True)
    candidate_groups = models.JSONField(default=list, blank=True)
    candidate_users = models.JSONField(default=list, blank=True)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="assigned_tasks"
    )
    form_schema = models.JSONField(null=True, blank=True)
    form_ui = models.JSONField(null=True, blank=True)
    due_at = models.DateTimeField(null=True, blank=True)
    priority = models.IntegerField(default=0)
    status = models.CharField(max_length=16, choices=HumanTaskStatus.choices, default=HumanTaskStatus.OPEN)
    created_at = models.DateTimeField(auto_now_add=True)
    completed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="completed_tasks"
    )
    completed_at = models.DateTimeField(null=True, blank=True)
    decision = models.CharField(max_length=64, blank=True)
    submitted = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [models.UniqueConstraint(fields=["instance", "task_id"], name="human_task_unique")]
        indexes = [models.Index(fields=["status", "element_id"], name="human_task_status_idx"),
                   models.Index(fields=["status", "due_at"], name="human_task_due_idx")]

    def __str__(self) -> str:
        return f"{self.name or self.element_id} ({self.status})"


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class Job(models.Model):
    """An automated step to run. The row is the truth; a Celery message is only a nudge."""

    instance = models.ForeignKey(
        ProcessInstance, null=True, blank=True, on_delete=models.CASCADE, related_name="jobs"
    )
    kind = models.CharField(max_length=32, default="service_task")
    task_id = models.UUIDField(null=True, blank=True)
    element_id = models.CharField(max_length=255, blank=True)
    connector = models.CharField(max_length=255, blank=True)
    params = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED)
    attempt = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=3)
    timeout_seconds = models.FloatField(null=True, blank=True)  # None: BATON_JOB_TIMEOUT_SECONDS
    backoff_seconds = models.FloatField(null=True, blank=True)  # None: BATON_JOB_BACKOFF_SECONDS
    run_at = models.DateTimeField(db_index=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    idempotency_key = models.CharField(max_length=64, unique=True)
    last_error = models.TextField(blank=True)
    result = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["run_at", "id"]
        indexes = [models.Index(fields=["status", "run_at"], name="job_status_run_at_idx")]

    def __str__(self) -> str:
        return f"job {self.pk} {self.connector} ({self.status})"


class IncidentStatus(models.TextChoices):
    OPEN = "open", "Open"
    RESOLVED = "resolved", "Resolved"


class Incident(models.Model):
    """A step that raised or a job that exhausted its retries, kept with the original error."""

    instance = models.ForeignKey(ProcessInstance, on_delete=models.CASCADE, related_name="incidents")
    job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="incidents")
    task_id = models.UUIDField(null=True, blank=True)
    element_id = models.CharField(max_length=255, blank=True)
    error_type = models.CharField(max_length=255)
    message = models.TextField()
    traceback = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=IncidentStatus.choices, default=IncidentStatus.OPEN)
    created_at = models.DateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"incident {self.pk} on {self.element_id}: {self.error_type}"


class AuditChain(models.Model):
    """Head of an audit chain that belongs to no instance (e.g. ``definitions``)."""

    key = models.CharField(max_length=64, unique=True)
    seq = models.PositiveIntegerField(default=0)
    head = models.CharField(max_length=64, blank=True)


class AuditEvent(models.Model):
    """One append-only, hash-chained record of a state-changing command.

    Chains are per instance (``chain`` = ``instance:<id>``) or named for events
    of no instance, so unrelated instances never wait on one lock. ``hash`` is
    SHA-256 over the previous hash and the canonical JSON of the event's fields.
    On PostgreSQL a trigger refuses UPDATE, DELETE and TRUNCATE.
    """

    chain = models.CharField(max_length=64)
    seq = models.PositiveIntegerField()
    instance = models.ForeignKey(
        ProcessInstance, null=True, blank=True, on_delete=models.PROTECT, related_name="audit_events"
    )
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    actor_name = models.CharField(max_length=150, blank=True)
    command = models.CharField(max_length=64)
    task_id = models.UUIDField(null=True, blank=True)
    element_id = models.CharField(max_length=255, blank=True)
    payload = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField()
    prev_hash = models.CharField(max_length=64, blank=True)
    hash = models.CharField(max_length=64)

    class Meta:
        ordering = ["chain", "seq"]
        constraints = [models.UniqueConstraint(fields=["chain", "seq"], name="audit_chain_seq_unique")]

    def __str__(self) -> str:
        return f"{self.chain}#{self.seq} {self.command}"


class ActivityState(models.TextChoices):
    ACTIVE = "active", "Active"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class Activity(models.Model):
    """One element an instance executed (activity-instance history), in order."""

    instance = models.ForeignKey(ProcessInstance, on_delete=models.CASCADE, related_name="activities")
    task_id = models.UUIDField()
    element_id = models.CharField(max_length=255)
    element_name = models.CharField(max_length=255, blank=True)
    element_type = models.CharField(max_length=64)
    state = models.CharField(max_length=16, choices=ActivityState.choices)
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["instance", "id"]
        constraints = [models.UniqueConstraint(fields=["instance", "task_id"], name="activity_task_unique")]

    def __str__(self) -> str:
        return f"{self.element_id} {self.state}"


class MessageSubscription(models.Model):
    """A catch event (or receive task) waiting for a message, with its correlation key.

    SpiffWorkflow alone would hand a message to every waiting instance while
    they have no correlation values yet; Baton computes the key when the wait
    starts and delivers only to matching subscriptions.
    """

    instance = models.ForeignKey(ProcessInstance, on_delete=models.CASCADE, related_name="subscriptions")
    task_id = models.UUIDField()
    element_id = models.CharField(max_length=255)
    message_name = models.CharField(max_length=255)
    correlation_key = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["instance", "task_id"], name="subscription_task_unique")]
        indexes = [models.Index(fields=["message_name", "correlation_key"], name="subscription_lookup_idx")]

    def __str__(self) -> str:
        return f"{self.message_name}[{self.correlation_key}] -> {self.instance_id}"


class Schedule(models.Model):
    """A timer start event of a published definition: Baton starts the instances.

    SpiffWorkflow only waits on timers inside an existing instance, so a
    process that starts on a schedule is Baton's job. Replaced (deactivated)
    when a newer version of the process is published.
    """

    class Kind(models.TextChoices):
        DATE = "date", "Date"
        DURATION = "duration", "Duration"
        CYCLE = "cycle", "Cycle"

    definition = models.ForeignKey(ProcessDefinition, on_delete=models.CASCADE, related_name="schedules")
    element_id = models.CharField(max_length=255)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    expression = models.TextField()
    next_run_at = models.DateTimeField(null=True, blank=True, db_index=True)
    remaining = models.IntegerField(null=True, blank=True)  # cycle repetitions left; None = unbounded
    active = models.BooleanField(default=True)
    last_run_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["definition", "element_id"], name="schedule_element_unique")]

    def __str__(self) -> str:
        return f"{self.definition} {self.element_id} next {self.next_run_at}"


class WebhookSubscription(models.Model):
    """An integrator's subscription to instance and task events, delivered as signed POSTs.

    Deliveries are ``Job`` rows of kind ``webhook`` (belonging to no instance);
    ``secret`` keys the HMAC-SHA256 signature of each body. ``events`` is a
    list of event types (``*`` = all); a blank ``process_key`` matches every process.
    """

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="webhook_subscriptions")
    url = models.URLField(max_length=500)
    secret = models.CharField(max_length=128)
    events = models.JSONField(default=list)
    process_key = models.CharField(max_length=255, blank=True)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["active"], name="webhook_active_idx")]

    def __str__(self) -> str:
        return f"webhook {self.pk} -> {self.url}"
