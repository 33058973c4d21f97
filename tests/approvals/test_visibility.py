"""Roles, visibility and start rights (A2: nobody sees tasks or instances outside their rights)."""
from __future__ import annotations

import pytest

from approvals import selectors
from approvals.selectors import can_start, instance_get_for, instances_for, roles_of, task_get_for, tasks_for
from core.errors import NotFound, ValidationError
from processes import services

from .conftest import fresh, open_task, upload_sample, upload_variant

pytestmark = pytest.mark.django_db


def _expense(users, amount=50, key="EXP-1"):
    return services.instance_start(process_key="expense_approval", actor=users["alice"], business_key=key,
                                   data={"employee": "alice", "amount": amount, "category": "it",
                                         "description": "laptop"})


def test_roles_come_from_groups_and_superuser(users):
    assert roles_of(users["eve"]) == {"approver", "requester"}
    assert roles_of(users["dana"]) == {"approver", "requester", "designer"}
    assert roles_of(users["oscar"]) == {"approver", "requester", "operator"}
    assert roles_of(users["audrey"]) == {"approver", "requester", "auditor"}
    assert "admin" in roles_of(users["admin"])
    from django.contrib.auth.models import AnonymousUser
    assert roles_of(AnonymousUser()) == set()


def test_a2_another_users_task_is_not_found_and_never_listed(users):
    upload_sample("expense_approval")
    instance = _expense(users)
    task = open_task(instance, "manager_approval")

    assert task_get_for(user=users["mike"], human_task_id=task.pk) == task
    for outsider in ("fiona", "lena", "eve", "dana", "alice"):
        with pytest.raises(NotFound) as missing:
            task_get_for(user=users[outsider], human_task_id=task.pk)
        # same answer as a task that does not exist: no existence oracle
        with pytest.raises(NotFound) as absent:
            task_get_for(user=users[outsider], human_task_id=task.pk + 1000)
        assert missing.value.status == absent.value.status == 404
        assert missing.value.message.replace(str(task.pk), "N") == absent.value.message.replace(
            str(task.pk + 1000), "N")
        for scope in selectors.SCOPES:
            assert task not in tasks_for(user=users[outsider], scope=scope)
    # operators, auditors and admins may read it, but it is not in their inbox
    for reader in ("oscar", "audrey", "admin"):
        assert task_get_for(user=users[reader], human_task_id=task.pk) == task
        assert task not in tasks_for(user=users[reader])


def test_inbox_counts_per_scope(users):
    from approvals.services import task_claim, task_decide

    upload_sample("expense_approval")
    first, second, third = (_expense(users, key=f"EXP-{i}") for i in range(3))
    mike = users["mike"]
    counts = {scope: tasks_for(user=mike, scope=scope).count() for scope in selectors.SCOPES}
    assert counts == {"mine": 0, "groups": 3, "done": 0, "all": 3}

    task_claim(human_task_id=open_task(first, "manager_approval").pk, actor=mike)
    task_decide(human_task_id=open_task(second, "manager_approval").pk, actor=mike, decision="approve")
    counts = {scope: tasks_for(user=mike, scope=scope).count() for scope in selectors.SCOPES}
    assert counts == {"mine": 1, "groups": 1, "done": 1, "all": 2}
    # a Managers task claimed by mike left max's group list
    max_ = users["max"]
    assert tasks_for(user=max_, scope="groups").count() == 1
    assert {t.instance_id for t in tasks_for(user=max_, scope="groups")} == {third.pk}
    with pytest.raises(ValidationError):
        tasks_for(user=mike, scope="everything")


def test_candidate_user_and_group_names_match_exactly(users, tmp_path):
    """Groups 'Manager' and 'managers' must not see tasks of 'Managers' (no substring or case-blind match)."""
    from django.contrib.auth.models import Group

    upload_sample("expense_approval")
    instance = _expense(users)
    task = open_task(instance, "manager_approval")
    eve = users["eve"]
    eve.groups.add(Group.objects.create(name="Manager"), Group.objects.create(name="managers"))
    eve = fresh(eve)
    assert task not in tasks_for(user=eve)
    with pytest.raises(NotFound):
        task_get_for(user=eve, human_task_id=task.pk)
    task.candidate_users = ["eve"]
    task.save(update_fields=["candidate_users"])
    assert task in tasks_for(user=eve, scope="groups")


def test_instances_visible_to_starter_participants_and_readers_only(users):
    upload_sample("expense_approval")
    instance = _expense(users)
    for who in ("alice", "mike", "max", "oscar", "audrey", "admin"):
        assert instance in instances_for(user=users[who]), who
        assert instance_get_for(user=users[who], instance_id=instance.pk) == instance
    for who in ("fiona", "lena", "eve", "dana"):
        assert instance not in instances_for(user=users[who]), who
        with pytest.raises(NotFound):
            instance_get_for(user=users[who], instance_id=instance.pk)


def test_start_rights_per_process(users, tmp_path):
    upload_sample("expense_approval")
    assert can_start(user=users["eve"], process_key="expense_approval")
    assert not can_start(user=users["eve"], process_key="nope")
    upload_variant("parallel_approvals", tmp_path, process_properties={"baton:starters": "Requesters, Legal"})
    assert can_start(user=users["alice"], process_key="parallel_approvals")
    assert can_start(user=users["lena"], process_key="parallel_approvals")
    assert not can_start(user=users["eve"], process_key="parallel_approvals")
    assert can_start(user=users["admin"], process_key="parallel_approvals")


def test_camunda_candidate_starter_groups_limit_start(users, tmp_path):
    upload_variant("rejection_loop", tmp_path, process_attributes=(
        'xmlns:camunda="http://camunda.org/schema/1.0/bpmn" camunda:candidateStarterGroups="Sales"'))
    assert not can_start(user=users["alice"], process_key="rejection_loop")
    from django.contrib.auth.models import Group

    users["alice"].groups.add(Group.objects.get_or_create(name="Sales")[0])
    assert can_start(user=fresh(users["alice"]), process_key="rejection_loop")
