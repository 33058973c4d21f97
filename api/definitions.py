"""Process definitions: list (with versions), detail, upload, XML download."""
from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, serializers
from rest_framework.parsers import MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from bpmn.models import ProcessDefinition
from bpmn.selectors import definition_get, definition_list
from bpmn.services import definition_upload
from core.errors import ValidationError

from .errors import errors
from .idempotency import PARAMETER as IDEMPOTENCY_KEY
from .idempotency import idempotent
from .permissions import DesignerForWrites


class DefinitionSerializer(serializers.ModelSerializer):
    versions = serializers.SerializerMethodField()
    files = serializers.SerializerMethodField()

    class Meta:
        model = ProcessDefinition
        fields = ["id", "process_key", "name", "version", "versions", "dialect", "source_name",
                  "content_hash", "calls", "files", "uploaded_at"]

    def get_versions(self, obj: ProcessDefinition) -> list[int]:
        return list(ProcessDefinition.objects.filter(process_key=obj.process_key)
                    .order_by("-version").values_list("version", flat=True))

    def get_files(self, obj: ProcessDefinition) -> list[str]:
        return list(obj.files.order_by("name").values_list("name", flat=True))


class UploadSerializer(serializers.Serializer):
    files = serializers.ListField(child=serializers.FileField(), allow_empty=False,
                                  help_text="BPMN diagrams, DMN tables and JSON forms (repeat the field).")


VERSION = OpenApiParameter("version", int, OpenApiParameter.QUERY, required=False,
                           description="A published version; the latest when absent.")


class DefinitionListView(generics.ListAPIView):
    """List the latest version of every process, with all its version numbers; designers upload."""

    serializer_class = DefinitionSerializer
    permission_classes = [DesignerForWrites]
    parser_classes = [MultiPartParser]

    def get_queryset(self):
        return definition_list(latest_only=True)

    @extend_schema(responses={200: DefinitionSerializer(many=True), **errors()})
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        request={"multipart/form-data": UploadSerializer},
        parameters=[IDEMPOTENCY_KEY],
        responses={201: DefinitionSerializer(many=True), **errors(403, 409, 422)},
        description="Publish one version per executable process. A refused upload is 422 "
                    "`diagram_rejected` with details `[{message, element_id, line, file}]`.",
    )
    def post(self, request, *args, **kwargs):
        def command() -> Response:
            uploads = request.FILES.getlist("files")
            if not uploads:
                raise ValidationError("send the diagram and its files as multipart field 'files'")
            files = [(f.name, b"".join(f.chunks())) for f in uploads]
            published = definition_upload(files=files, uploaded_by=request.user)
            return Response(DefinitionSerializer(published, many=True).data, status=201)

        return idempotent(request, command)


class DefinitionDetailView(generics.GenericAPIView):
    """One process definition (latest, or ``?version=``)."""

    serializer_class = DefinitionSerializer
    permission_classes = [IsAuthenticated]

    @extend_schema(parameters=[VERSION], responses={200: DefinitionSerializer, **errors(404, 422)})
    def get(self, request, process_key: str):
        definition = definition_get(process_key=process_key, version=_version(request))
        return Response(DefinitionSerializer(definition).data)


class DefinitionXmlView(generics.GenericAPIView):
    """Download the BPMN XML of a definition as uploaded."""

    permission_classes = [IsAuthenticated]

    @extend_schema(parameters=[VERSION],
                   responses={(200, "application/xml"): OpenApiResponse(OpenApiTypes.STR), **errors(404, 422)})
    def get(self, request, process_key: str):
        definition = definition_get(process_key=process_key, version=_version(request))
        response = HttpResponse(definition.bpmn_xml, content_type="application/xml; charset=utf-8")
        name = definition.source_name or f"{definition.process_key}.bpmn"
        response["Content-Disposition"] = f'attachment; filename="{name.replace(chr(34), "")}"'
        return response


def _version(request) -> int | None:
    raw = request.query_params.get("version")
    if raw in (None, ""):
        return None
    try:
        return int(raw)
    except ValueError:
        raise ValidationError("version must be an integer") from None
