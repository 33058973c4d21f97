"""Notify people of new tasks, reminders, escalations and decisions: in the app and by e-mail.

Triggers (registered in ``ApprovalsConfig.ready``):

- ``command_finished`` (inside the command's transaction, under the instance
  lock): every task the command opened notifies its assignee, or its
  candidate users and the active members of its candidate groups (kind
  ``task_new``, or ``escalation`` when a boundary timer fired in the same
  command); a boundary timer whose path continues in another lane notifies
  that lane's group (``escalation``, e.g. the expense sample's Finance lane);
  a task completed with a decision notifies the instance's starter
  (``decision``, with outcome and reason) unless the starter decided.
- ``sweep``: an open task due within ``BATON_REMINDER_BEFORE`` (or overdue)
  reminds each of its people once (``reminder``).

Each person's ``Profile.notify`` picks the channels per kind (a missing kind
or channel means on). In-app notices are one bulk INSERT; e-mails are one
``Job`` row per message (kind ``email``, connector ``email.send``, belonging
to no instance so finishing the instance never cancels them), committed with
the command and retried with backoff, so a mail server outage loses nothing.
People without an e-mail address get in-app notices only.

Cost on the command path: nothing when the command opened no task, decided
nothing and fired no boundary timer; otherwise one SELECT for the people (with
their groups, address and preferences), one INSERT of notices and one INSERT
of e-mail jobs, each only when needed.
"""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Iterable

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from processes.jobs import seconds_from
from processes.models import HumanTask, HumanTaskStatus, Job, ProcessInstance
from processes.nudge import nudge_on_commit

from .models import Notification, NotificationKind, TaskReminder

log = logging.getLogger("baton.notifications")
KINDS = [(kind.value, kind.label) for kind in NotificationKind]
CHANNELS = (("app", "In the app"), ("email", "By e-mail"))
EMAIL_JOB_KIND = "email"


@dataclass
class Person:
    """Who gets a notice: address, preferences and group names (from one query)."""

    pk: int
    username: str
    email: str
    notify: dict
    groups: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Notice:
    kind: str
    title: str
    body: str = ""
    url: str = ""
    task: HumanTask | None = None
    instance: ProcessInstance | None = None
    email_key: str = ""  # stable idempotency key for the e-mail job (reminders); random otherwise


def wants(notify: Any, kind: str, channel: str) -> bool:
    """True unless the person switched ``channel`` off for ``kind`` (missing means on)."""
    prefs = notify.get(kind) if isinstance(notify, dict) else None
    return not isinstance(prefs, dict) or bool(prefs.get(channel, True))


def people_resolve(*, user_ids: Iterable[int] = (), usernames: Iterable[str] = (),
                   groups: Iterable[str] = ()) -> dict[int, Person]:
    """Return the active users named by id, username or group membership, in ONE query.

    One row per (user, group) through a LEFT JOIN, so each person comes back
    with the group names the caller needs to match candidate groups.
    """
    user_ids, usernames, groups = set(user_ids), set(usernames), set(groups)
    condition = Q(pk__in=user_ids) if user_ids else Q()
    if usernames:
        condition |= Q(username__in=usernames)
    if groups:
        condition |= Q(groups__name__in=groups)
    if not condition:
        return {}
    rows = get_user_model().objects.filter(condition, is_active=True).values_list(
        "pk", "username", "email", "profile__notify", "groups__name")
    people: dict[int, Person] = {}
    for pk, username, email, notify, group in rows:
        person = people.setdefault(pk, Person(pk, username, email or "", notify if isinstance(notify, dict) else {}))
        if group:
            person.groups.add(group)
    return people


def _needs(tasks: Iterable[HumanTask]) -> tuple[set[int], set[str], set[str]]:
    ids, names, groups = set(), set(), set()
    for task in tasks:
        if task.assignee_id:
            ids.add(task.assignee_id)
        else:
            names.update(task.candidate_users or [])
            groups.update(task.candidate_groups or [])
    return ids, names, groups


def task_people(task: HumanTask, people: dict[int, Person]) -> list[Person]:
    """The assignee, or the candidate users and active members of the candidate groups."""
    if task.assignee_id:
        return [people[task.assignee_id]] if task.assignee_id in people else []
    users, groups = set(task.candidate_users or []), set(task.candidate_groups or [])
    return [p for p in people.values() if p.username in users or p.groups & groups]


def _label(instance: ProcessInstance) -> str:
    definition = instance.definition
    name = definition.name or definition.process_key
    return f"{name} {instance.business_key}" if instance.business_key else f"{name} #{instance.pk}"


def _task_url(task: HumanTask) -> str:
    return reverse("task", args=[task.pk])


def deliver(pairs: list[tuple[Person, Notice]], *, now: datetime | None = None) -> tuple[int, int]:
    """Write the in-app notices (one INSERT) and queue the e-mails (one INSERT); return both counts."""
    now = now or timezone.now()
    rows, jobs, seen = [], [], set()
    for person, notice in pairs:
        key = (person.pk, notice.kind, notice.task.pk if notice.task else None, notice.title)
        if key in seen:
            continue
        seen.add(key)
        if wants(person.notify, notice.kind, "app"):
            rows.append(Notification(user_id=person.pk, kind=notice.kind, title=notice.title[:255], body=notice.body,
                                     url=notice.url, task=notice.task, instance=notice.instance))
        if person.email and wants(person.notify, notice.kind, "email"):
            jobs.append(_email_job(person, notice, now))
    if rows:
        Notification.objects.bulk_create(rows)
    if jobs:
        jobs = Job.objects.bulk_create(jobs)
        nudge_on_commit([job.pk for job in jobs])
    return len(rows), len(jobs)


def assignment_notify(*, task: HumanTask, to_user: Any, by: Any, verb: str, reason: str = "") -> int:
    """Tell the person a task was handed to (delegated, reassigned), in the app and by e-mail; return notices made.

    Called inside the handing-over command, so the notice commits with it.
    Nobody is told of a task they handed to themself.
    """
    if to_user.pk == getattr(by, "pk", None):
        return 0
    person = people_resolve(user_ids=[to_user.pk]).get(to_user.pk)
    if person is None:
        return 0
    name, label = task.name or task.element_id, _label(task.instance)
    body = f"{by.get_username()} {verb} {name} of {label} to you" + (f": {reason}" if reason else ".")
    notice = Notice(NotificationKind.TASK_NEW, f"{name} was {verb} to you ({label})", body,
                    _task_url(task), task, task.instance)
    return sum(deliver([(person, notice)]))


def standin_notify(*, standin: Any, actor: Any, ended: bool = False) -> int:
    """Tell the people of a stand-in that it was set or ended, except whoever did it; return notices made."""
    whom, stand_in = standin.user, standin.stand_in
    until = f" until {timezone.localtime(standin.ends_at):%Y-%m-%d %H:%M}" if standin.ends_at and not ended else ""
    since = f" from {timezone.localtime(standin.starts_at):%Y-%m-%d %H:%M}" if standin.starts_at > timezone.now() else ""
    by = actor.get_username()
    if ended:
        title = f"{stand_in.get_username()} no longer stands in for {whom.get_username()}"
        body = f"{by} ended the stand-in."
    else:
        title = f"{stand_in.get_username()} stands in for {whom.get_username()}{since}{until}"
        body = f"{by} set it" + (f": {standin.reason}" if standin.reason else ".") + (
            f" {stand_in.get_username()} sees and acts on {whom.get_username()}'s open tasks, recorded as for them.")
    people = people_resolve(user_ids=[u.pk for u in (whom, stand_in) if u.pk != actor.pk])
    notice = Notice(NotificationKind.STANDIN, title[:255], body, reverse("away"))
    return sum(deliver([(person, notice) for person in people.values()]))


def _email_job(person: Person, notice: Notice, now: datetime) -> Job:
    link = f"\n\n{settings.BATON_BASE_URL.rstrip('/')}{notice.url}" if notice.url else ""
    footer = f"\n\n--\nChoose which notices you get: {settings.BATON_BASE_URL.rstrip('/')}" \
             f"{reverse('notification_settings')}"
    return Job(instance=None, kind=EMAIL_JOB_KIND, connector="email.send", run_at=now,
               max_attempts=settings.BATON_EMAIL_MAX_ATTEMPTS,
               idempotency_key=notice.email_key or f"notify:{uuid.uuid4().hex}",
               params={"to": [person.email], "subject": notice.title, "body": f"{notice.body}{link}{footer}",
                       "kind": notice.kind, "user_id": person.pk})


# --- the command listener ----------------------------------------------------------------------------------


def _boundary_timers(run: Any, entries: list) -> list[str]:
    elements = run.instance.definition.elements or {}
    return [e.element_id for e in entries if e.command == "timer_fired" and e.element_id
            and (elements.get(e.element_id) or {}).get("type") == "boundaryEvent"]


def _escalation_lanes(run: Any, fired: list[str]) -> tuple[set[str], set]:
    """Lanes the fired boundary timers' paths reached (other than the watched task's), and the watched tasks' ids."""
    from processes.engine.runtime import activity_diff  # pure: compares states with run.before

    elements = run.instance.definition.elements or {}
    watched, lanes, own = set(), set(), set()
    for task in run.workflow.get_tasks():
        if task.task_spec.bpmn_id in fired and task.parent is not None:
            for sibling in task.parent.children:  # the boundary parent holds the watched activity and its events
                if sibling.task_spec.bpmn_id not in fired:
                    watched.add(sibling.id)
                    own.add((elements.get(sibling.task_spec.bpmn_id) or {}).get("lane"))
    opened = {task.element_id for task in run.created_tasks}  # their candidates get an "Escalated" task notice
    for view, _state in activity_diff(run.workflow, run.before).started:
        meta = elements.get(view.element_id) or {}
        if meta.get("type") != "boundaryEvent" and meta.get("lane") and view.element_id not in opened:
            lanes.add(meta["lane"])
    return lanes - own - {None}, watched


def command_notify(run: Any, entries: list) -> None:
    """Notify the people a finished command concerns (the ``command_finished`` listener)."""
    decided = [e for e in entries if e.command == "task_complete" and (e.payload or {}).get("decision")]
    fired = _boundary_timers(run, entries) if any(e.command == "timer_fired" for e in entries) else []
    instance = run.instance
    starter = instance.started_by_id if decided and instance.started_by_id != getattr(run.actor, "pk", None) else None
    if not run.created_tasks and not starter and not fired:
        return
    lanes, watched = _escalation_lanes(run, fired) if fired else (set(), set())
    ids, names, groups = _needs(run.created_tasks)
    people = people_resolve(user_ids=ids | ({starter} if starter else set()), usernames=names, groups=groups | lanes)
    label, pairs = _label(instance), []
    kind = NotificationKind.ESCALATION if fired else NotificationKind.TASK_NEW
    for task in run.created_tasks:
        title = f"{'Escalated' if fired else 'New task'}: {task.name or task.element_id} ({label})"
        notice = Notice(kind, title, f"{task.name or task.element_id} of {label} waits for you.",
                        _task_url(task), task, instance)
        pairs += [(person, notice) for person in task_people(task, people)]
    if lanes:
        pairs += _lane_escalations(run, lanes, watched, people, label)
    if starter and starter in people:
        pairs += [(people[starter], _decision_notice(run, entry, label)) for entry in decided]
    deliver(pairs, now=run.now)


def _lane_escalations(run: Any, lanes: set[str], watched: set, people: dict[int, Person], label: str) -> list:
    elements = run.instance.definition.elements or {}
    names = [n for n in ((elements.get(t.task_spec.bpmn_id) or {}).get("name") for t in run.workflow.get_tasks()
                         if t.id in watched) if n] or ["A step"]
    notice = Notice(NotificationKind.ESCALATION, f"Escalation: {', '.join(names)} of {label} is overdue",
                    f"{', '.join(names)} of {label} was not done in time; the process escalated it to "
                    f"{', '.join(sorted(lanes))}.", "", None, run.instance)
    return [(person, notice) for person in people.values() if person.groups & lanes]


def _decision_notice(run: Any, entry: Any, label: str) -> Notice:
    elements = run.instance.definition.elements or {}
    step = (elements.get(entry.element_id) or {}).get("name") or entry.element_id
    outcome, reason = entry.payload.get("decision"), (entry.payload.get("reason") or "").strip()
    by = getattr(run.actor, "username", "") or "someone"
    body = f"{by} decided '{outcome}' on {step} of {label}." + (f"\nReason: {reason}" if reason else "")
    return Notice(NotificationKind.DECISION, f"{step}: {outcome} ({label})", body,
                  reverse("instance", args=[run.instance.pk]), None, run.instance)


# --- reminders (the sweep listener) ------------------------------------------------------------------------


def reminders_send(now: datetime | None = None, *, limit: int = 500) -> int:
    """Remind each person of an open task due within ``BATON_REMINDER_BEFORE`` (or overdue), once.

    "Once" per task: a ``TaskReminder`` row marks a task whose people were
    reminded, so overdue tasks never crowd newer ones out of the ``limit``
    window (people who join its groups later get no reminder). Runs from the
    sweeper; a concurrent sweeper's batch hits the ``TaskReminder`` primary key
    (or an e-mail job's idempotency key ``remind:<task>:<user>``) and rolls
    back whole.
    """
    now = now or timezone.now()
    ahead = timedelta(seconds=seconds_from(getattr(settings, "BATON_REMINDER_BEFORE", "P1D")) or 0)
    tasks = list(HumanTask.objects.filter(status=HumanTaskStatus.OPEN, due_at__lte=now + ahead, reminder__isnull=True)
                 .select_related("instance__definition").order_by("due_at", "id")[:limit])
    if not tasks:
        return 0
    ids, names, groups = _needs(tasks)
    people = people_resolve(user_ids=ids, usernames=names, groups=groups)
    pairs = []
    for person, task in ((person, task) for task in tasks for person in task_people(task, people)):
        key = f"remind:{task.pk}:{person.pk}"
        when = "is overdue" if task.due_at <= now else f"is due {timezone.localtime(task.due_at):%Y-%m-%d %H:%M}"
        label = _label(task.instance)
        pairs.append((person, Notice(NotificationKind.REMINDER, f"Reminder: {task.name or task.element_id} {when}",
                                     f"{task.name or task.element_id} of {label} {when}.", _task_url(task), task,
                                     task.instance, email_key=key)))
    try:
        with transaction.atomic():
            TaskReminder.objects.bulk_create([TaskReminder(task=task, sent_at=now) for task in tasks])
            deliver(pairs, now=now)
    except IntegrityError:
        log.info("another sweeper sent these reminders")
        return 0
    return len(pairs)


# --- reads and the reader's commands -----------------------------------------------------------------------


def notifications_for(*, user: Any, unread: bool = False):
    """The user's own notices, newest first (nobody ever reads another person's)."""
    if not getattr(user, "is_authenticated", False):
        return Notification.objects.none()
    qs = Notification.objects.filter(user=user)
    return qs.filter(read_at__isnull=True) if unread else qs


def unread_count(*, user: Any) -> int:
    """One COUNT on the (user, read_at) index."""
    return notifications_for(user=user, unread=True).count()


def notification_read(*, user: Any, notification_id: int) -> Notification:
    """Mark one of the user's notices read (idempotent); another person's is ``NotFound``."""
    from core.errors import NotFound

    notice = notifications_for(user=user).filter(pk=notification_id).first()
    if notice is None:
        raise NotFound(f"notification {notification_id} does not exist")
    if notice.read_at is None:
        notice.read_at = timezone.now()
        notice.save(update_fields=["read_at"])
    return notice


def notifications_read_all(*, user: Any) -> int:
    """Mark all the user's unread notices read; return how many."""
    return notifications_for(user=user, unread=True).update(read_at=timezone.now())


def preferences_get(*, user: Any) -> dict[str, dict[str, bool]]:
    """Every kind x channel, with the defaults (on) filled in."""
    from .models import Profile

    notify = Profile.objects.filter(user=user).values_list("notify", flat=True).first() or {}
    return {kind: {channel: wants(notify, kind, channel) for channel, _ in CHANNELS} for kind, _ in KINDS}


def preferences_set(*, user: Any, chosen: Iterable[str]) -> dict[str, dict[str, bool]]:
    """Save the kind x channel grid: ``chosen`` holds ``"<kind>:<channel>"`` for each box that is on."""
    from .models import Profile

    chosen = set(chosen)
    notify = {kind: {channel: f"{kind}:{channel}" in chosen for channel, _ in CHANNELS} for kind, _ in KINDS}
    profile, _ = Profile.objects.get_or_create(user=user)
    profile.notify = notify
    profile.save(update_fields=["notify"])
    return notify
