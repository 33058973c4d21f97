"""Your notifications: list (``?unread=true``), mark one read, mark all read.

Everyone reads only their own: another person's notification answers 404,
exactly like one that does not exist. Marking read is idempotent by nature
(reading twice changes nothing), so no Idempotency-Key is needed.
"""
from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers
from rest_framework.response import Response

from approvals import notifications as notes
from approvals.models import Notification

from .errors import errors


class NotificationSerializer(serializers.ModelSerializer):
    task_id = serializers.IntegerField(allow_null=True, read_only=True)
    instance_id = serializers.IntegerField(allow_null=True, read_only=True)
    unread = serializers.SerializerMethodField()

    class Meta:
        model = Notification
        fields = ["id", "kind", "title", "body", "url", "task_id", "instance_id", "created_at", "read_at", "unread"]

    def get_unread(self, obj: Notification) -> bool:
        return obj.read_at is None


class ReadAllSerializer(serializers.Serializer):
    marked = serializers.IntegerField(help_text="How many unread notifications were marked read.")


class EmptySerializer(serializers.Serializer):
    pass


UNREAD = OpenApiParameter("unread", bool, OpenApiParameter.QUERY, required=False,
                          description="true: only notifications not yet read.")


class NotificationListView(generics.ListAPIView):
    """Your notifications, newest first."""

    serializer_class = NotificationSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Notification.objects.none()
        unread = (self.request.query_params.get("unread") or "").lower() in ("1", "true", "yes")
        return notes.notifications_for(user=self.request.user, unread=unread)

    @extend_schema(parameters=[UNREAD], responses={200: NotificationSerializer(many=True), **errors()})
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class NotificationReadView(generics.GenericAPIView):
    """Mark one of your notifications read (again: no change)."""

    serializer_class = EmptySerializer

    @extend_schema(request=None, responses={200: NotificationSerializer, **errors(403, 404)})
    def post(self, request, notification_id: int):
        notice = notes.notification_read(user=request.user, notification_id=notification_id)
        return Response(NotificationSerializer(notice).data)


class NotificationReadAllView(generics.GenericAPIView):
    """Mark all your unread notifications read."""

    serializer_class = ReadAllSerializer

    @extend_schema(request=None, responses={200: ReadAllSerializer, **errors()})
    def post(self, request):
        return Response({"marked": notes.notifications_read_all(user=request.user)})
