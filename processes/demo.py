"""Demo data for the embedded default: users, roles, sample processes, instances.

Idempotent: run by ``make run`` at every start; only missing pieces are added.
"""
from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction

from bpmn.services import definition_upload

from . import services
from .models import HumanTaskStatus, ProcessInstance
from .samples import SAMPLES_DIR

ROLE_GROUPS = ["Requesters", "Managers", "Finance", "Legal", "Approvers", "Operators", "Sales", "Board",
               "designers", "operators", "auditors"]


@dataclass(frozen=True)
class DemoUser:
    username: str
    password: str
    groups: tuple[str, ...]
    superuser: bool = False


DEMO_USERS = [
    DemoUser("admin", "admin-demo", (), superuser=True),
    DemoUser("alice", "alice-demo", ("Requesters",)),
    DemoUser("mike", "mike-demo", ("Managers", "Approvers", "Board")),
    DemoUser("fiona", "fiona-demo", ("Finance", "Board")),
    DemoUser("lena", "lena-demo", ("Legal", "Board")),
    DemoUser("sam", "sam-demo", ("Sales",)),
    DemoUser("oscar", "oscar-demo", ("Operators", "operators")),
    DemoUser("dana", "dana-demo", ("designers",)),
    DemoUser("audrey", "audrey-demo", ("auditors",)),
]


def demo_users() -> list[DemoUser]:
    """Create the demo users and groups that are missing; return them all."""
    User = get_user_model()
    groups = {name: Group.objects.get_or_create(name=name)[0] for name in ROLE_GROUPS}
    for spec in DEMO_USERS:
        user = User.objects.filter(username=spec.username).first()
        if user is None:
            user = User.objects.create_user(spec.username, password=spec.password, email=f"{spec.username}@example.com")
            user.is_staff = user.is_superuser = spec.superuser
            user.save(update_fields=["is_staff", "is_superuser"])
        user.groups.add(*[groups[g] for g in spec.groups])
    demo_directory()
    return DEMO_USERS


# username -> (manager, department, title): the people directory that candidate expressions such as
# ``=manager_of(requester)`` read (``approvals.Profile``).
DEMO_DIRECTORY = {
    "alice": ("mike", "Sales", "Account executive"),
    "sam": ("mike", "Sales", "Sales representative"),
    "mike": ("fiona", "Sales", "Sales manager"),
    "lena": ("fiona", "Legal", "Counsel"),
    "fiona": (None, "Finance", "Head of finance"),
}


def demo_directory() -> None:
    """Fill in missing directory profiles of the demo users (kept by approvals, if installed)."""
    from django.apps import apps

    if not apps.is_installed("approvals"):
        return
    Profile = apps.get_model("approvals", "Profile")  # by name: processes never imports approvals
    User = get_user_model()
    people = {u.username: u for u in User.objects.filter(username__in=[*DEMO_DIRECTORY, "fiona"])}
    for username, (manager, department, title) in DEMO_DIRECTORY.items():
        if username in people and not Profile.objects.filter(user=people[username]).exists():
            Profile.objects.create(user=people[username], manager=people.get(manager) if manager else None,
                                   department=department, title=title)


def demo_definitions() -> list[str]:
    """Upload every sample process (same content = same version, so this is idempotent)."""
    keys: list[str] = []
    for folder in sorted(p for p in SAMPLES_DIR.iterdir() if p.is_dir() and any(p.glob("*.bpmn"))):
        files = [(f.name, f.read_bytes()) for f in sorted(folder.iterdir()) if f.suffix in (".bpmn", ".json", ".dmn")]
        keys += [d.process_key for d in definition_upload(files=files, uploaded_by=None)]
    return keys


def _open(instance: ProcessInstance, element_id: str):
    return instance.human_tasks.get(element_id=element_id, status=HumanTaskStatus.OPEN)


@transaction.atomic
def demo_instances() -> int:
    """Start a few instances at different stages, once."""
    if ProcessInstance.objects.exists():
        return 0
    User = get_user_model()
    alice, mike = User.objects.get(username="alice"), User.objects.get(username="mike")
    fiona = User.objects.get(username="fiona")
    start = services.instance_start
    start(process_key="expense_approval", actor=alice, business_key="EXP-1001",
          data={"employee": "alice", "amount": 85, "category": "meals", "description": "Team lunch"})
    big = start(process_key="expense_approval", actor=alice, business_key="EXP-1002",
                data={"employee": "alice", "amount": 2400, "category": "it", "description": "New laptop"})
    services.task_complete(human_task_id=_open(big, "manager_approval").pk, actor=mike,
                           data={"decision": "approve", "reason": "Needed"}, decision="approve", reason="Needed")
    done = start(process_key="expense_approval", actor=alice, business_key="EXP-1000",
                 data={"employee": "alice", "amount": 40, "category": "travel", "description": "Taxi"})
    services.task_complete(human_task_id=_open(done, "manager_approval").pk, actor=mike,
                           data={"decision": "approve"}, decision="approve")
    contract = start(process_key="parallel_approvals", actor=alice, business_key="CTR-7",
                     data={"contract": "Supplier NDA", "value": 12000})
    services.task_complete(human_task_id=_open(contract, "finance_review").pk, actor=fiona,
                           data={"decision": "approve"}, decision="approve")
    start(process_key="rejection_loop", actor=alice, business_key="PR-33", data={"item": "Desk chair", "price": 240})
    start(process_key="board_approval", actor=alice, business_key="BOARD-1",  # a 2-of-3 vote of Board
          data={"proposal": "Open an office in Lyon", "budget": 250000})
    start(process_key="failing_service", actor=alice, business_key="INV-SYNC-1", data={"number": 42})
    return ProcessInstance.objects.count()
