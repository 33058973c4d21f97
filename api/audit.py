"""Audit trail: an instance's hash-chained events, and chain verification. Auditors only."""
from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers
from rest_framework.response import Response

from core.errors import ValidationError
from processes.audit import audit_verify_report, instance_chain
from processes.models import AuditEvent
from processes.selectors import instance_get

from .errors import errors
from .permissions import IsAuditor


class AuditEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = ["id", "chain", "seq", "instance_id", "actor_id", "actor_name", "command", "task_id",
                  "element_id", "payload", "created_at", "prev_hash", "hash"]


class AuditBreakSerializer(serializers.Serializer):
    chain = serializers.CharField()
    seq = serializers.IntegerField()
    reason = serializers.CharField()


class AuditReportSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    chains = serializers.IntegerField()
    events = serializers.IntegerField()
    breaks = AuditBreakSerializer(many=True)


class InstanceAuditView(generics.ListAPIView):
    """The audit events of one instance, in chain order (paginated)."""

    serializer_class = AuditEventSerializer
    permission_classes = [IsAuditor]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return AuditEvent.objects.none()
        instance = instance_get(instance_id=self.kwargs["instance_id"])
        return AuditEvent.objects.filter(chain=instance_chain(instance.pk)).order_by("seq")

    @extend_schema(responses={200: AuditEventSerializer(many=True), **errors(403, 404)})
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


INSTANCE = OpenApiParameter("instance", int, OpenApiParameter.QUERY, required=False,
                            description="Verify only this instance's chain; all chains when absent.")


class AuditVerifyView(generics.GenericAPIView):
    """Verify the hash chains (all, or one instance's): ``ok`` with the first break of each broken chain."""

    serializer_class = AuditReportSerializer
    permission_classes = [IsAuditor]

    @extend_schema(parameters=[INSTANCE], responses={200: AuditReportSerializer, **errors(403, 404, 422)})
    def get(self, request):
        raw = request.query_params.get("instance")
        chain = None
        if raw:
            if not raw.isdigit():
                raise ValidationError("instance must be an integer")
            chain = instance_chain(instance_get(instance_id=int(raw)).pk)
        report = audit_verify_report(chain=chain)
        return Response(AuditReportSerializer({"ok": not report.breaks, "chains": report.chains,
                                               "events": report.events, "breaks": report.breaks}).data)
