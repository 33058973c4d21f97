"""Messages and signals from other systems: correlate a message, broadcast a signal.

Both act for a system rather than for a person, so they are restricted to
operators (and admins): a message may advance or start any process, whoever
may see it. The answer names the instances advanced and started; the caller,
an operator, may see all of them. (A finer Django permission such as
``api.correlate_message`` is left for when integrator accounts get their own
role.)
"""
from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers
from rest_framework.response import Response

from processes import messages

from .errors import errors
from .idempotency import PARAMETER as IDEMPOTENCY_KEY
from .idempotency import idempotent
from .permissions import IsOperator


class MessageSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=255, help_text="The BPMN message name, e.g. payment_received.")
    correlation_key = serializers.CharField(
        required=False, allow_null=True, default=None, max_length=255,
        help_text="Correlation value the waiting instance must have (or the business key of an instance the "
                  "message starts, when its start event has no correlation properties).")
    business_key = serializers.CharField(required=False, allow_blank=True, default="", max_length=255,
                                         help_text="Only instances with this business key; also given to a "
                                                   "started instance.")
    payload = serializers.DictField(required=False, default=dict, help_text="The message content.")


class SignalSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=255, help_text="The BPMN signal name.")
    payload = serializers.DictField(required=False, default=dict, help_text="The signal content.")


class CorrelationResultSerializer(serializers.Serializer):
    advanced = serializers.ListField(child=serializers.IntegerField(),
                                     help_text="Ids of waiting instances the message or signal advanced.")
    started = serializers.ListField(child=serializers.IntegerField(),
                                    help_text="Ids of instances started by a message or signal start event.")


def _valid(serializer_class, request) -> dict:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


class MessageCorrelateView(generics.GenericAPIView):
    """Correlate a message: deliver it to the one instance waiting for it, or start a process on it.

    Several matching instances (or several processes starting on it) are 409
    ``ambiguous_correlation`` with the ids in ``details``; nothing waiting and
    no process starting on it is 404. Operators and admins only.
    """

    serializer_class = MessageSerializer
    permission_classes = [IsOperator]

    @extend_schema(request=MessageSerializer, parameters=[IDEMPOTENCY_KEY],
                   responses={200: CorrelationResultSerializer, **errors(403, 404, 409, 422)})
    def post(self, request):
        def command() -> Response:
            args = _valid(MessageSerializer, request)
            result = messages.message_correlate(actor=request.user, **args)
            return Response(CorrelationResultSerializer(result).data)

        return idempotent(request, command)


class SignalBroadcastView(generics.GenericAPIView):
    """Broadcast a signal to every instance waiting for it and start every process with that signal start.

    A signal nobody waits for is not an error (both lists are empty). Operators and admins only.
    """

    serializer_class = SignalSerializer
    permission_classes = [IsOperator]

    @extend_schema(request=SignalSerializer, parameters=[IDEMPOTENCY_KEY],
                   responses={200: CorrelationResultSerializer, **errors(403, 409, 422)})
    def post(self, request):
        def command() -> Response:
            args = _valid(SignalSerializer, request)
            result = messages.signal_broadcast(actor=request.user, **args)
            return Response(CorrelationResultSerializer(result).data)

        return idempotent(request, command)
