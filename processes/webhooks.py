"""Webhooks: turn instance and task events into signed HTTP deliveries through the job table.

``webhooks_emit`` runs inside the command's transaction (from ``CommandRun``)
and inserts one ``Job`` of kind ``webhook`` per matching active
``WebhookSubscription`` and event, belonging to no instance (so completing or
cancelling the instance never cancels a delivery). The job worker then POSTs
the JSON body, signed ``X-Baton-Signature: sha256=<HMAC-SHA256(secret, body)>``;
a non-2xx answer or an error is retried with the jobs' backoff
(``messages.event_job_fail``) and, after the last attempt, the job is
``failed`` with ``last_error`` (no incident: there is no instance to hold one).

Cost: a command that produced no webhook event runs no statement here; one
that did reads the active subscriptions with one SELECT, unless this process
saw "no active subscription" less than ``BATON_WEBHOOK_CACHE_SECONDS`` ago
(saving or deleting a subscription in this process resets that answer; other
processes notice within the cache time).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
import traceback
import urllib.error
import urllib.request
import uuid
from typing import TYPE_CHECKING, Any, Iterable

from django.conf import settings
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.utils import timezone

from .audit import AuditEntry
from .models import Job, JobStatus, WebhookSubscription

if TYPE_CHECKING:
    from .models import ProcessInstance
    from .persistence import CommandRun

log = logging.getLogger("baton.webhooks")

KIND = "webhook"
EVENTS = ("instance.started", "instance.completed", "instance.cancelled", "instance.incident",
          "task.created", "task.completed")
_BY_COMMAND = {"instance_start": "instance.started", "instance_complete": "instance.completed",
               "instance_cancel": "instance.cancelled", "incident_open": "instance.incident",
               "task_complete": "task.completed"}

_none_until = 0.0  # monotonic time until which "no active subscription" is trusted in this process


def new_secret() -> str:
    return secrets.token_hex(32)


def sign(secret: str, body: bytes) -> str:
    """The ``X-Baton-Signature`` value of ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@receiver(post_save, sender=WebhookSubscription, dispatch_uid="processes.webhooks.saved")
@receiver(post_delete, sender=WebhookSubscription, dispatch_uid="processes.webhooks.deleted")
def _subscriptions_changed(**kwargs: Any) -> None:
    global _none_until
    _none_until = 0.0


def _active_subscriptions() -> list[WebhookSubscription]:
    global _none_until
    if time.monotonic() < _none_until:
        return []
    subscriptions = list(WebhookSubscription.objects.filter(active=True).only("id", "events", "process_key"))
    if not subscriptions:
        _none_until = time.monotonic() + float(getattr(settings, "BATON_WEBHOOK_CACHE_SECONDS", 5))
    return subscriptions


def _instance_payload(instance: ProcessInstance) -> dict[str, Any]:
    return {"instance_id": instance.pk, "process_key": instance.definition.process_key,
            "business_key": instance.business_key, "status": instance.status}


def _task_name(run: CommandRun, task_id: Any) -> str:
    try:
        spec = run.workflow.get_task_from_id(task_id).task_spec
        return spec.bpmn_name or spec.bpmn_id or spec.name
    except Exception:  # noqa: BLE001 - the name is a courtesy
        return ""


def _events(run: CommandRun | None, instance: ProcessInstance, entries: Iterable[AuditEntry]) -> list[tuple[str, dict]]:
    """(event type, extra payload) of what the command did, in order."""
    events: list[tuple[str, dict]] = []
    for index, entry in enumerate(entries):
        event = _BY_COMMAND.get(entry.command)
        if event == "task.completed":
            events.append((event, {"task": {"task_id": str(entry.task_id), "element_id": entry.element_id,
                                            "name": _task_name(run, entry.task_id) if run else "",
                                            "decision": entry.payload.get("decision", "")}}))
        elif event == "instance.incident":
            events.append((event, {"incident": {"id": entry.payload.get("incident"), "element_id": entry.element_id,
                                                "error_type": entry.payload.get("error_type", "")}}))
        elif event:
            events.append((event, {}))
        if index == 0 and run is not None:  # tasks the command opened follow the command's own event
            events += [("task.created", {"task": {"id": task.pk, "task_id": str(task.task_id),
                                                  "element_id": task.element_id, "name": task.name}})
                       for task in run.created_tasks]
    return events


def webhooks_emit(run: CommandRun | None, entries: Iterable[AuditEntry], *, instance: ProcessInstance | None = None,
                  now=None) -> list[Job]:
    """Queue one delivery job per (matching active subscription, event) of this command."""
    instance = instance if instance is not None else run.instance
    events = _events(run, instance, entries)
    if not events:
        return []
    subscriptions = _active_subscriptions()
    if not subscriptions:
        return []
    from .nudge import nudge_on_commit

    now = now or (run.now if run is not None else timezone.now())
    base = {**_instance_payload(instance), "occurred_at": now.isoformat()}
    max_attempts = int(getattr(settings, "BATON_WEBHOOK_MAX_ATTEMPTS", 8))
    jobs = []
    for event, extra in events:
        for subscription in subscriptions:
            if subscription.process_key and subscription.process_key != base["process_key"]:
                continue
            wanted = subscription.events or []
            if "*" not in wanted and event not in wanted:
                continue
            delivery = str(uuid.uuid4())
            jobs.append(Job(
                instance=None, kind=KIND, connector=KIND, run_at=now, max_attempts=max_attempts,
                idempotency_key=delivery,
                params={"subscription_id": subscription.pk, "event": event, "delivery_id": delivery,
                        "payload": {**base, **extra}},
            ))
    if jobs:
        jobs = Job.objects.bulk_create(jobs)
        nudge_on_commit([job.pk for job in jobs])
    return jobs


# --- delivery: called by jobs.job_execute ------------------------------------------------------------------

class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:  # a 3xx is a failed delivery
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def delivery_body(params: dict[str, Any]) -> bytes:
    """The exact bytes POSTed (and signed) for a delivery job's params."""
    return json.dumps({"id": params.get("delivery_id"), "event": params.get("event"),
                       "data": params.get("payload") or {}}, sort_keys=True, separators=(",", ":")).encode()


def webhook_job_run(*, job: Job) -> str:
    """POST a claimed delivery; 2xx marks it done, anything else is a failed attempt."""
    from .messages import event_job_fail

    params = job.params or {}
    subscription = WebhookSubscription.objects.filter(pk=params.get("subscription_id")).first()
    if subscription is None or not subscription.active:
        Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING, attempt=job.attempt).update(
            status=JobStatus.CANCELLED, last_error="subscription deleted or inactive", lease_expires_at=None,
            updated_at=timezone.now())
        return "cancelled"
    body = delivery_body(params)
    request = urllib.request.Request(subscription.url, data=body, method="POST", headers={
        "Content-Type": "application/json", "User-Agent": "Baton-Webhooks/1",
        "X-Baton-Event": str(params.get("event", "")), "X-Baton-Delivery": str(params.get("delivery_id", "")),
        "X-Baton-Signature": sign(subscription.secret, body),
    })
    timeout = float(getattr(settings, "BATON_WEBHOOK_TIMEOUT_SECONDS", 10))
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except Exception as exc:  # noqa: BLE001 - connection errors, timeouts: a failed attempt
        event_job_fail(job_id=job.pk, attempt=job.attempt, error_type=exc.__class__.__name__,
                       message=str(exc) or exc.__class__.__name__,
                       traceback_text="".join(traceback.format_exception_only(exc)))
        return "failed"
    if not 200 <= status < 300:
        event_job_fail(job_id=job.pk, attempt=job.attempt, error_type="HTTPStatus",
                       message=f"{subscription.url} answered {status}")
        return "failed"
    Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING, attempt=job.attempt).update(
        status=JobStatus.DONE, result={"status": status}, last_error="", lease_expires_at=None,
        updated_at=timezone.now())
    return "done"
