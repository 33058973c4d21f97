"""Incidents (failed steps): list, retry with optional data, skip. Operators only."""
from __future__ import annotations

import django_filters
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers
from rest_framework.response import Response

from processes import services
from processes.models import Incident, IncidentStatus

from .errors import errors
from .idempotency import PARAMETER as IDEMPOTENCY_KEY
from .idempotency import idempotent
from .instances import InstanceDetailSerializer, _detail
from .permissions import IsOperator


class IncidentFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=IncidentStatus.choices)
    # An integer in the database's range: a DecimalField (NumberFilter's) let 1e129 through to the
    # query, where it overflowed the driver (500, found by schemathesis); now it is a 422.
    instance = django_filters.NumberFilter(field_name="instance_id", min_value=-(2**63), max_value=2**63 - 1,
                                           decimal_places=0)

    class Meta:
        model = Incident
        fields = ["status", "instance"]


class IncidentSerializer(serializers.ModelSerializer):
    instance_id = serializers.IntegerField()
    job_id = serializers.IntegerField(allow_null=True)

    class Meta:
        model = Incident
        fields = ["id", "instance_id", "job_id", "task_id", "element_id", "error_type", "message", "traceback",
                  "status", "created_at", "resolved_at"]


class IncidentDataSerializer(serializers.Serializer):
    data = serializers.DictField(required=False, default=dict,
                                 help_text="Data to merge into the failed step before it runs again / is skipped.")


class IncidentListView(generics.ListAPIView):
    """List incidents, newest first (filters: status, instance)."""

    serializer_class = IncidentSerializer
    permission_classes = [IsOperator]
    filterset_class = IncidentFilter
    queryset = Incident.objects.order_by("-id")

    @extend_schema(responses={200: IncidentSerializer(many=True), **errors(403, 422)})
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class _IncidentCommandView(generics.GenericAPIView):
    serializer_class = IncidentDataSerializer
    permission_classes = [IsOperator]
    action = ""

    @extend_schema(request=IncidentDataSerializer, parameters=[IDEMPOTENCY_KEY],
                   responses={200: InstanceDetailSerializer, **errors(403, 404, 409, 422)})
    def post(self, request, incident_id: int):
        def command() -> Response:
            serializer = IncidentDataSerializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            action = getattr(services, f"incident_{self.action}")
            return _detail(action(incident_id=incident_id, actor=request.user,
                                  data=serializer.validated_data["data"] or None))

        return idempotent(request, command)


class IncidentRetryView(_IncidentCommandView):
    """Run the failed step again, optionally after changing its data."""

    action = "retry"


class IncidentSkipView(_IncidentCommandView):
    """Complete the failed step as if it had succeeded with the given data."""

    action = "skip"
