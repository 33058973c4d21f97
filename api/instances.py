"""Process instances: start, list, detail, cancel / suspend / resume, history, diagram state.

Visibility comes from ``approvals.selectors.instances_for`` / ``instance_get_for``:
an instance a user may not see is 404, and lists only hold visible rows.
"""
from __future__ import annotations

import django_filters
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers
from rest_framework.response import Response

from approvals.diagram import diagram_state
from bpmn.selectors import definition_get
from core.errors import PermissionDenied
from processes import services
from processes.models import InstanceStatus, ProcessInstance

from .errors import errors
from .idempotency import PARAMETER as IDEMPOTENCY_KEY
from .idempotency import idempotent
from .permissions import has_role


class InstanceFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=InstanceStatus.choices)
    process_key = django_filters.CharFilter(field_name="definition__process_key")
    business_key = django_filters.CharFilter()

    class Meta:
        model = ProcessInstance
        fields = ["status", "process_key", "business_key"]


class TaskBriefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    element_id = serializers.CharField()
    name = serializers.CharField()
    lane = serializers.CharField()
    assignee = serializers.CharField(source="assignee.username", allow_null=True, default=None)
    created_at = serializers.DateTimeField()


class InstanceSerializer(serializers.ModelSerializer):
    process_key = serializers.CharField(source="definition.process_key")
    definition_version = serializers.IntegerField(source="definition.version")
    started_by = serializers.CharField(source="started_by.username", allow_null=True, default=None)

    class Meta:
        model = ProcessInstance
        fields = ["id", "process_key", "definition_version", "business_key", "status", "version",
                  "started_by", "started_at", "updated_at", "ended_at"]


class InstanceDetailSerializer(InstanceSerializer):
    data = serializers.JSONField()
    open_tasks = serializers.SerializerMethodField()

    class Meta(InstanceSerializer.Meta):
        fields = [*InstanceSerializer.Meta.fields, "data", "open_tasks"]

    @extend_schema(responses=TaskBriefSerializer(many=True))
    def get_open_tasks(self, obj: ProcessInstance) -> list[dict]:
        tasks = obj.human_tasks.filter(status="open").select_related("assignee").order_by("id")
        return TaskBriefSerializer(tasks, many=True).data


class StartSerializer(serializers.Serializer):
    process_key = serializers.CharField()
    version = serializers.IntegerField(required=False, allow_null=True, default=None)
    business_key = serializers.CharField(required=False, allow_blank=True, default="", max_length=255)
    data = serializers.DictField(required=False, default=dict)


class ReasonSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, default="")


def _detail(instance: ProcessInstance, status: int = 200) -> Response:
    instance.refresh_from_db()
    response = Response(InstanceDetailSerializer(instance).data, status=status)
    response["ETag"] = f'"{instance.pk}-{instance.version}"'
    return response


def _visible(request, instance_id: int) -> ProcessInstance:
    from approvals.selectors import instance_get_for

    return instance_get_for(user=request.user, instance_id=instance_id)


class InstanceListView(generics.ListAPIView):
    """List the instances you may see (filters: status, process_key, business_key); start one."""

    serializer_class = InstanceSerializer
    filterset_class = InstanceFilter

    def get_queryset(self):
        from approvals.selectors import instances_for

        if getattr(self, "swagger_fake_view", False):
            return ProcessInstance.objects.none()
        return instances_for(user=self.request.user).select_related("definition", "started_by").order_by("-id")

    @extend_schema(responses={200: InstanceSerializer(many=True), **errors(422)})
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(request=StartSerializer, parameters=[IDEMPOTENCY_KEY],
                   responses={201: InstanceDetailSerializer, **errors(403, 404, 409, 422)})
    def post(self, request, *args, **kwargs):
        from approvals.selectors import can_start

        def command() -> Response:
            args = _valid(StartSerializer, request)
            definition_get(process_key=args["process_key"], version=args["version"])  # 404 first
            if not can_start(user=request.user, process_key=args["process_key"]):
                raise PermissionDenied(f"you may not start '{args['process_key']}'")
            instance = services.instance_start(actor=request.user, **args)
            return _detail(instance, status=201)

        return idempotent(request, command)


class InstanceDetailView(generics.GenericAPIView):
    """One instance with its data, open tasks and ``version`` (also the ETag)."""

    serializer_class = InstanceDetailSerializer

    @extend_schema(responses={200: InstanceDetailSerializer, **errors(404)})
    def get(self, request, instance_id: int):
        return _detail(_visible(request, instance_id))


class _CommandView(generics.GenericAPIView):
    """POST a lifecycle command on an instance: operators (and, for cancel, the starter)."""

    serializer_class = ReasonSerializer
    command = ""
    starter_allowed = False

    def post(self, request, instance_id: int):
        def command() -> Response:
            instance = _visible(request, instance_id)
            is_starter = self.starter_allowed and instance.started_by_id == request.user.pk
            if not (is_starter or has_role(request.user, "operator")):
                raise PermissionDenied(f"only operators may {self.command} instances")
            reason = _valid(ReasonSerializer, request)["reason"]
            kwargs = {"reason": reason} if self.command != "resume" else {}
            action = getattr(services, f"instance_{self.command}")
            return _detail(action(instance_id=instance.pk, actor=request.user, **kwargs))

        return idempotent(request, command)


@extend_schema(request=ReasonSerializer, parameters=[IDEMPOTENCY_KEY],
               responses={200: InstanceDetailSerializer, **errors(403, 404, 409, 422)})
class InstanceCancelView(_CommandView):
    """Cancel an unfinished instance (operators, or the user who started it)."""

    command, starter_allowed = "cancel", True


@extend_schema(request=ReasonSerializer, parameters=[IDEMPOTENCY_KEY],
               responses={200: InstanceDetailSerializer, **errors(403, 404, 409, 422)})
class InstanceSuspendView(_CommandView):
    """Suspend an active instance (operators)."""

    command = "suspend"


@extend_schema(request=ReasonSerializer, parameters=[IDEMPOTENCY_KEY],
               responses={200: InstanceDetailSerializer, **errors(403, 404, 409, 422)})
class InstanceResumeView(_CommandView):
    """Resume a suspended instance (operators)."""

    command = "resume"


class HistoryEventSerializer(serializers.Serializer):
    seq = serializers.IntegerField()
    command = serializers.CharField()
    actor = serializers.CharField(source="actor_name")
    element_id = serializers.CharField()
    task_id = serializers.UUIDField(allow_null=True)
    payload = serializers.JSONField()
    created_at = serializers.DateTimeField()


class ActivitySerializer(serializers.Serializer):
    element_id = serializers.CharField()
    element_name = serializers.CharField()
    element_type = serializers.CharField()
    state = serializers.CharField()
    started_at = serializers.DateTimeField()
    ended_at = serializers.DateTimeField(allow_null=True)


class HistorySerializer(serializers.Serializer):
    events = HistoryEventSerializer(many=True)
    activities = ActivitySerializer(many=True)


class InstanceHistoryView(generics.GenericAPIView):
    """The instance's audit events and executed activities, in order."""

    serializer_class = HistorySerializer

    @extend_schema(responses={200: HistorySerializer, **errors(404)})
    def get(self, request, instance_id: int):
        instance = _visible(request, instance_id)
        return Response(HistorySerializer({
            "events": instance.audit_events.order_by("seq"),
            "activities": instance.activities.order_by("id"),
        }).data)


class DiagramStateSerializer(serializers.Serializer):
    active = serializers.ListField(child=serializers.CharField())
    done = serializers.ListField(child=serializers.CharField())
    failed = serializers.ListField(child=serializers.CharField())


class InstanceDiagramStateView(generics.GenericAPIView):
    """Element ids to highlight on the diagram: active, done and failed (from the engine's task tree)."""

    serializer_class = DiagramStateSerializer

    @extend_schema(responses={200: DiagramStateSerializer, **errors(404)})
    def get(self, request, instance_id: int):
        instance = _visible(request, instance_id)
        return Response(DiagramStateSerializer(diagram_state(instance=instance)).data)


def _valid(serializer_class, request) -> dict:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)
