"""Stand-ins (out of office): list yours, set one, end one.

Thin views over ``approvals.people``: anyone may set their own stand-in;
operators and admins may set one for someone else (``user``). The list holds
the stand-ins current or future where you are away or stand in for someone.
Ending one is for the absent person, the stand-in, or an operator; anyone else
gets 404. Every change is audited on the ``people`` chain.
"""
from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers
from rest_framework.response import Response

from approvals.models import StandIn
from approvals.people import active_user
from core.errors import NotFound

from .errors import errors
from .idempotency import PARAMETER as IDEMPOTENCY_KEY
from .idempotency import idempotent


class StandInSerializer(serializers.ModelSerializer):
    user = serializers.CharField(source="user.username", help_text="The person who is away.")
    stand_in = serializers.CharField(source="stand_in.username", help_text="Who acts for them.")

    class Meta:
        model = StandIn
        fields = ["id", "user", "stand_in", "starts_at", "ends_at", "reason", "created_at"]


class StandInCreateSerializer(serializers.Serializer):
    stand_in = serializers.CharField(help_text="Username of the stand-in (an active user).")
    user = serializers.CharField(required=False, allow_blank=True, default="",
                                 help_text="Who is away; blank for yourself (others: operators and admins only).")
    starts_at = serializers.DateTimeField(required=False, allow_null=True, default=None,
                                          help_text="Default: now.")
    ends_at = serializers.DateTimeField(required=False, allow_null=True, default=None,
                                        help_text="Blank: until ended.")
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=255)


class EmptySerializer(serializers.Serializer):
    pass


def active_user_or_404(username: str):
    """The active user with this username; ``NotFound`` otherwise."""
    user = active_user(username)
    if user is None:
        raise NotFound(f"user '{username}' does not exist")
    return user


class StandInListView(generics.ListAPIView):
    """Your stand-ins, current and future (as the absent person or as the stand-in); or set one."""

    serializer_class = StandInSerializer

    def get_queryset(self):
        from approvals.people import standins_of

        if getattr(self, "swagger_fake_view", False) or not self.request.user.is_authenticated:
            return StandIn.objects.none()
        return standins_of(self.request.user).order_by("-starts_at", "-id")

    @extend_schema(responses={200: StandInSerializer(many=True), **errors()})
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(request=StandInCreateSerializer, parameters=[IDEMPOTENCY_KEY],
                   responses={201: StandInSerializer, **errors(403, 404, 409, 422)})
    def post(self, request, *args, **kwargs):
        from approvals.people import standin_set

        def command() -> Response:
            serializer = StandInCreateSerializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            args = serializer.validated_data
            user = active_user_or_404(args["user"]) if args["user"] else request.user
            standin = standin_set(actor=request.user, user=user, stand_in=active_user_or_404(args["stand_in"]),
                                  starts_at=args["starts_at"], ends_at=args["ends_at"], reason=args["reason"])
            return Response(StandInSerializer(standin).data, status=201)

        return idempotent(request, command)


class StandInEndView(generics.GenericAPIView):
    """End a stand-in now (or cancel a future one)."""

    serializer_class = EmptySerializer
    queryset = StandIn.objects.none()

    @extend_schema(request=None, parameters=[IDEMPOTENCY_KEY],
                   responses={200: StandInSerializer, **errors(403, 404, 409)})
    def post(self, request, standin_id: int):
        from approvals.people import standin_end

        return idempotent(request, lambda: Response(StandInSerializer(
            standin_end(actor=request.user, standin_id=standin_id)).data))
