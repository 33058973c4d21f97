"""The people directory, out-of-office stand-ins and what happens when someone leaves.

* ``Profile`` rows (manager, department, title, free ``attributes``) are made
  lazily by ``profile_of``; ``manager_of`` and ``user_attr`` are what candidate
  expressions call (``=manager_of(requester)``).
* A ``StandIn`` lets ``stand_in`` act for ``user`` between ``starts_at`` and
  ``ends_at`` (open-ended when empty). Setting and ending one is audited on the
  named audit chain ``people`` (it belongs to no instance); what a stand-in does
  to a task is audited on the instance's chain with ``acting_for``.
* Deactivating a user (``is_active`` True -> False through ``save()``) gives
  their open assigned tasks back to the task's candidates
  (``approvals.services.tasks_release_of_deactivated``), wired by signals here.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from core.errors import Conflict, NotFound, PermissionDenied, ValidationError
from processes.audit import AuditEntry, audit_append

from .models import Profile, StandIn
from .notifications import standin_notify

PEOPLE_CHAIN = "people"


def _user(user_or_username: Any) -> Any | None:
    if user_or_username is None:
        return None
    if getattr(user_or_username, "pk", None):
        return user_or_username
    return get_user_model().objects.filter(username=str(user_or_username)).first()


def active_user(username: str) -> Any | None:
    """The active user with this username, or ``None`` (also for a blank name)."""
    return get_user_model().objects.filter(username=username, is_active=True).first() if username else None


def active_usernames(*, exclude: Any = None, limit: int = 500) -> list[str]:
    """Usernames of active users, sorted (choices for a "to whom" field), without ``exclude``."""
    users = get_user_model().objects.filter(is_active=True).order_by("username")
    if getattr(exclude, "pk", None):
        users = users.exclude(pk=exclude.pk)
    return list(users.values_list("username", flat=True)[:limit])


def profile_of(user: Any) -> Profile:
    """Return the user's directory profile, creating an empty one on first use."""
    profile = getattr(user, "_baton_profile", None)
    if profile is None:
        profile = Profile.objects.get_or_create(user=user)[0]
        user._baton_profile = profile
    return profile


def manager_of(user_or_username: Any) -> Any | None:
    """Return the directory manager (a ``User``) of a user or username, or ``None``."""
    user = _user(user_or_username)
    if user is None:
        return None
    profile = Profile.objects.select_related("manager").filter(user=user).first()
    return profile.manager if profile is not None else None


def user_attr(user_or_username: Any, name: str) -> Any:
    """Return a directory attribute: ``manager`` (a username), ``department``, ``title``, ``email``,
    else ``attributes[name]``; ``None`` when unknown."""
    user = _user(user_or_username)
    if user is None:
        return None
    if name == "email":
        return user.email or None
    profile = Profile.objects.select_related("manager").filter(user=user).first()
    if profile is None:
        return None
    if name == "manager":
        return profile.manager.get_username() if profile.manager else None
    if name in ("department", "title"):
        return getattr(profile, name) or None
    return (profile.attributes or {}).get(name)


# --- stand-ins -----------------------------------------------------------------------------------------------------


def _may_manage(actor: Any, user: Any) -> bool:
    from .selectors import roles_of

    return actor.pk == user.pk or bool(roles_of(actor) & {"operator", "admin"})


def _standin_payload(standin: StandIn) -> dict:
    return {"standin": standin.pk, "user": standin.user.get_username(),
            "stand_in": standin.stand_in.get_username(), "starts_at": standin.starts_at.isoformat(),
            "ends_at": standin.ends_at.isoformat() if standin.ends_at else None, "reason": standin.reason}


def standin_set(*, actor: Any, user: Any, stand_in: Any, starts_at: datetime | None = None,
                ends_at: datetime | None = None, reason: str = "") -> StandIn:
    """Let ``stand_in`` act for ``user`` from ``starts_at`` (default now) until ``ends_at`` (open-ended if None).

    Allowed to the user themself and to operators/admins. The stand-in must be
    an active user other than ``user``. Audited as ``standin_set`` on the
    ``people`` chain.
    """
    if not _may_manage(actor, user):
        raise PermissionDenied("only the person themself or an operator may set their stand-in",
                               code="not_permitted")
    problems = []
    if stand_in is None or not getattr(stand_in, "pk", None) or not stand_in.is_active:
        problems.append({"field": "stand_in", "message": "Choose an active user."})
    elif stand_in.pk == user.pk:
        problems.append({"field": "stand_in", "message": "A person cannot stand in for themself."})
    starts_at = starts_at or timezone.now()
    if ends_at is not None and ends_at <= starts_at:
        problems.append({"field": "ends_at", "message": "Must be after the start."})
    if problems:
        raise ValidationError("the stand-in is not valid", details=problems)
    with transaction.atomic():
        standin = StandIn.objects.create(user=user, stand_in=stand_in, starts_at=starts_at, ends_at=ends_at,
                                         reason=(reason or "")[:255])
        audit_append(chain=PEOPLE_CHAIN, actor=actor,
                     entry=AuditEntry("standin_set", payload=_standin_payload(standin)))
        standin_notify(standin=standin, actor=actor)
    return standin


def standin_end(*, actor: Any, standin_id: int) -> StandIn:
    """End a stand-in now (or cancel a future one); by the absent person, the stand-in, or an operator."""
    from .selectors import roles_of

    qs = StandIn.objects.select_related("user", "stand_in")
    if not roles_of(actor) & {"operator", "admin"}:
        qs = qs.filter(Q(user=actor) | Q(stand_in=actor))
    with transaction.atomic():
        standin = qs.select_for_update(of=("self",)).filter(pk=standin_id).first()
        if standin is None:
            raise NotFound(f"stand-in {standin_id} does not exist")
        now = timezone.now()
        if standin.ends_at is not None and standin.ends_at <= now:
            raise Conflict(f"stand-in {standin_id} has already ended", code="standin_ended")
        standin.ends_at = max(now, standin.starts_at)
        standin.save(update_fields=["ends_at"])
        audit_append(chain=PEOPLE_CHAIN, actor=actor,
                     entry=AuditEntry("standin_end", payload=_standin_payload(standin)))
        standin_notify(standin=standin, actor=actor, ended=True)
    return standin


def standins_of(user: Any, now: datetime | None = None) -> QuerySet[StandIn]:
    """Stand-ins current or future where ``user`` is away or stands in for someone."""
    now = now or timezone.now()
    return (StandIn.objects.select_related("user", "stand_in")
            .filter(Q(user=user) | Q(stand_in=user))
            .filter(Q(ends_at__isnull=True) | Q(ends_at__gt=now)))


def represented_by(user: Any, now: datetime | None = None) -> list[Any]:
    """Return the active users ``user`` currently stands in for (one query)."""
    if not getattr(user, "pk", None) or not getattr(user, "is_active", False):
        return []
    now = now or timezone.now()
    ids = (StandIn.objects.filter(stand_in=user, starts_at__lte=now, user__is_active=True)
           .filter(Q(ends_at__isnull=True) | Q(ends_at__gt=now)).values_list("user_id", flat=True))
    return list(get_user_model().objects.filter(pk__in=ids).order_by("pk"))


# --- deactivation --------------------------------------------------------------------------------------------------


def _remember_active(sender: Any, instance: Any, **kwargs: Any) -> None:
    instance._baton_was_active = instance.__dict__.get("is_active")


def _deactivated(sender: Any, instance: Any, created: bool = False, **kwargs: Any) -> None:
    was = getattr(instance, "_baton_was_active", None)
    instance._baton_was_active = instance.__dict__.get("is_active")
    if created or was is not True or instance.__dict__.get("is_active") is not False:
        return
    from .services import tasks_release_of_deactivated

    tasks_release_of_deactivated(user=instance)


def connect_signals() -> None:
    """Watch ``User.is_active`` (called from ``ApprovalsConfig.ready``)."""
    from django.db.models.signals import post_init, post_save

    User = get_user_model()
    post_init.connect(_remember_active, sender=User, dispatch_uid="baton_user_was_active")
    post_save.connect(_deactivated, sender=User, dispatch_uid="baton_user_deactivated")
