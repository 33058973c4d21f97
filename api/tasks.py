"""Human tasks: inbox (mine / groups / done / all), detail with form, claim, release, delegate, reassign, decide.

Reads go through ``approvals.selectors`` (a task you may not see is 404);
commands through ``approvals.services``, which enforce candidates, claims and
separation of duties.
"""
from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers
from rest_framework.response import Response

from processes.models import HumanTask

from .errors import errors
from .idempotency import PARAMETER as IDEMPOTENCY_KEY
from .idempotency import idempotent
from .people import active_user_or_404


class TaskSerializer(serializers.ModelSerializer):
    instance_id = serializers.IntegerField()
    process_key = serializers.CharField(source="instance.definition.process_key")
    business_key = serializers.CharField(source="instance.business_key")
    assignee = serializers.CharField(source="assignee.username", allow_null=True, default=None)
    completed_by = serializers.CharField(source="completed_by.username", allow_null=True, default=None)

    class Meta:
        model = HumanTask
        fields = ["id", "instance_id", "process_key", "business_key", "element_id", "name", "kind", "lane",
                  "candidate_groups", "candidate_users", "assignee", "status", "priority", "due_at",
                  "created_at", "completed_by", "completed_at", "decision"]


class TaskDetailSerializer(TaskSerializer):
    class Meta(TaskSerializer.Meta):
        fields = [*TaskSerializer.Meta.fields, "form_schema", "form_ui", "submitted"]


class DelegateSerializer(serializers.Serializer):
    to_user = serializers.CharField(help_text="Username of the new assignee.")
    reason = serializers.CharField(required=False, allow_blank=True, default="")


class DecideSerializer(serializers.Serializer):
    data = serializers.DictField(required=False, default=dict, help_text="Form data.")
    decision = serializers.CharField(required=False, allow_blank=True, default="", max_length=64,
                                     help_text="e.g. approve / reject; stored under decisions[element_id].")
    reason = serializers.CharField(required=False, allow_blank=True, default="")
    override_reason = serializers.CharField(required=False, allow_blank=True, default="",
                                            help_text="Overrides a separation-of-duties rule (needs permission).")


class EmptySerializer(serializers.Serializer):
    pass


SCOPE = OpenApiParameter("scope", str, OpenApiParameter.QUERY, required=False, enum=["mine", "groups", "done", "all"],
                         description="mine: assigned to me; groups: claimable; done: completed by me; all: mine+groups.")


class TaskListView(generics.ListAPIView):
    """Your task inbox for a scope (default ``all``: assigned to you and claimable by you)."""

    serializer_class = TaskSerializer

    def get_queryset(self):
        from approvals.selectors import tasks_for

        if getattr(self, "swagger_fake_view", False):
            return HumanTask.objects.none()
        return tasks_for(user=self.request.user, scope=self.request.query_params.get("scope") or "all")

    @extend_schema(parameters=[SCOPE], responses={200: TaskSerializer(many=True), **errors(422)})
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class TaskDetailView(generics.GenericAPIView):
    """One task with its form schema and UI schema."""

    serializer_class = TaskDetailSerializer

    @extend_schema(responses={200: TaskDetailSerializer, **errors(404)})
    def get(self, request, task_id: int):
        from approvals.selectors import task_get_for

        return Response(TaskDetailSerializer(task_get_for(user=request.user, human_task_id=task_id)).data)


class _TaskCommandView(generics.GenericAPIView):
    """POST one command on a visible task; answers the task as it is afterwards."""

    serializer_class = EmptySerializer

    def run(self, request, task_id: int, args: dict) -> HumanTask:
        raise NotImplementedError

    def post(self, request, task_id: int):
        from approvals.selectors import task_get_for

        def command() -> Response:
            task_get_for(user=request.user, human_task_id=task_id)  # 404 before anything else
            serializer = self.get_serializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            self.run(request, task_id, dict(serializer.validated_data))
            # Re-read directly: after a delegation the actor may no longer see the task.
            task = HumanTask.objects.select_related("instance__definition", "assignee", "completed_by").get(pk=task_id)
            return Response(TaskDetailSerializer(task).data)

        return idempotent(request, command)


def _command_schema(request_serializer):
    return extend_schema(request=request_serializer, parameters=[IDEMPOTENCY_KEY],
                         responses={200: TaskDetailSerializer, **errors(403, 404, 409, 422)})


@_command_schema(None)
class TaskClaimView(_TaskCommandView):
    """Claim an open task you are a candidate for."""

    def run(self, request, task_id, args):
        from approvals.services import task_claim

        return task_claim(human_task_id=task_id, actor=request.user)


@_command_schema(None)
class TaskReleaseView(_TaskCommandView):
    """Give a claimed task back to its candidates."""

    def run(self, request, task_id, args):
        from approvals.services import task_release

        return task_release(human_task_id=task_id, actor=request.user)


@_command_schema(DelegateSerializer)
class TaskDelegateView(_TaskCommandView):
    """Hand a task to another user, with a reason (audited)."""

    serializer_class = DelegateSerializer

    def run(self, request, task_id, args):
        from approvals.services import task_delegate

        to_user = active_user_or_404(args["to_user"])
        return task_delegate(human_task_id=task_id, actor=request.user, to_user=to_user, reason=args["reason"])


class ReassignSerializer(serializers.Serializer):
    to_user = serializers.CharField(help_text="Username of the new assignee.")
    reason = serializers.CharField(help_text="Why the task moves (required, audited).")


@_command_schema(ReassignSerializer)
class TaskReassignView(_TaskCommandView):
    """Move a task to another user, with a reason: operators, admins, or the assignee's directory manager."""

    serializer_class = ReassignSerializer

    def run(self, request, task_id, args):
        from approvals.services import task_reassign

        to_user = active_user_or_404(args["to_user"])
        return task_reassign(human_task_id=task_id, actor=request.user, to_user=to_user, reason=args["reason"])


@_command_schema(DecideSerializer)
class TaskDecideView(_TaskCommandView):
    """Complete a task with form data and a decision; the process advances."""

    serializer_class = DecideSerializer

    def run(self, request, task_id, args):
        from approvals.services import task_decide

        return task_decide(human_task_id=task_id, actor=request.user, **args)
