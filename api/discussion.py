"""Comments and attachments on a task: list and add, download one attachment.

Thin views over ``approvals.discussion``: a task you may not see is 404 (as
if it did not exist); reading is for everyone who sees the task, adding for
the people working on it, its requester and operators (auditors read only:
403). Uploads are multipart (field ``file``) up to
``BATON_ATTACHMENT_MAX_BYTES``; a larger or empty file is 422. A download
whose stored bytes no longer match the recorded SHA-256 is 409
``attachment_altered``.
"""
from __future__ import annotations

from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, serializers
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response

from approvals.models import TaskAttachment, TaskComment
from core.errors import ValidationError

from .errors import errors
from .idempotency import PARAMETER as IDEMPOTENCY_KEY
from .idempotency import idempotent


class CommentSerializer(serializers.ModelSerializer):
    author = serializers.CharField(source="author.username")
    text = serializers.CharField(source="body")

    class Meta:
        model = TaskComment
        fields = ["id", "task_id", "author", "text", "created_at"]


class CommentCreateSerializer(serializers.Serializer):
    text = serializers.CharField(max_length=10_000, help_text="The comment (required; audited with its text).")


class AttachmentSerializer(serializers.ModelSerializer):
    uploaded_by = serializers.CharField(source="uploaded_by.username")

    class Meta:
        model = TaskAttachment
        fields = ["id", "task_id", "filename", "content_type", "size", "sha256", "uploaded_by", "created_at"]


class AttachmentUploadSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="The file (multipart field `file`).")


def _visible_task(request, task_id: int):
    from approvals.selectors import task_get_for

    return task_get_for(user=request.user, human_task_id=task_id)


class TaskCommentListView(generics.ListAPIView):
    """The comments on a task, oldest first; or add one."""

    serializer_class = CommentSerializer

    def get_queryset(self):
        from approvals.discussion import comments_for

        if getattr(self, "swagger_fake_view", False):
            return TaskComment.objects.none()
        return comments_for(_visible_task(self.request, self.kwargs["task_id"]))

    @extend_schema(responses={200: CommentSerializer(many=True), **errors(404)})
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(request=CommentCreateSerializer, parameters=[IDEMPOTENCY_KEY],
                   responses={201: CommentSerializer, **errors(403, 404, 409, 422)})
    def post(self, request, task_id: int):
        from approvals.discussion import comment_add

        def command() -> Response:
            _visible_task(request, task_id)  # 404 before anything else
            serializer = CommentCreateSerializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            comment = comment_add(human_task_id=task_id, actor=request.user, text=serializer.validated_data["text"])
            return Response(CommentSerializer(comment).data, status=201)

        return idempotent(request, command)


class TaskAttachmentListView(generics.ListAPIView):
    """The files attached to a task, oldest first; or upload one (multipart field ``file``)."""

    serializer_class = AttachmentSerializer
    parser_classes = [MultiPartParser]

    def get_queryset(self):
        from approvals.discussion import attachments_for

        if getattr(self, "swagger_fake_view", False):
            return TaskAttachment.objects.none()
        return attachments_for(_visible_task(self.request, self.kwargs["task_id"]))

    @extend_schema(responses={200: AttachmentSerializer(many=True), **errors(404)})
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(request={"multipart/form-data": AttachmentUploadSerializer}, parameters=[IDEMPOTENCY_KEY],
                   responses={201: AttachmentSerializer, **errors(403, 404, 409, 422)},
                   description="Stored outside task data under its SHA-256, which the audit trail records. "
                               "Larger than BATON_ATTACHMENT_MAX_BYTES or empty: 422 with details on `file`.")
    def post(self, request, task_id: int):
        from approvals.discussion import attachment_add, attachment_check_size

        def command() -> Response:
            _visible_task(request, task_id)
            upload = request.FILES.get("file")
            if upload is None:
                raise ValidationError("send the file as multipart field 'file'",
                                      details=[{"field": "file", "message": "This field is required."}])
            attachment_check_size(upload.size)
            attachment = attachment_add(human_task_id=task_id, actor=request.user, filename=upload.name or "",
                                        content_type=upload.content_type or "", data=upload.read())
            return Response(AttachmentSerializer(attachment).data, status=201)

        return idempotent(request, command)


class TaskAttachmentDownloadView(generics.GenericAPIView):
    """Download one attachment's bytes (after checking them against the recorded SHA-256)."""

    serializer_class = AttachmentSerializer
    queryset = TaskAttachment.objects.none()

    @extend_schema(responses={(200, "application/octet-stream"): OpenApiResponse(
        OpenApiTypes.BINARY, description="The file, as an attachment (Content-Disposition has its name)."),
        **errors(404, 409)})
    def get(self, request, task_id: int, attachment_id: int):
        from approvals.discussion import attachment_open

        opened = attachment_open(attachment_id=attachment_id, actor=request.user, human_task_id=task_id)
        response = FileResponse(opened.file, as_attachment=True, filename=opened.attachment.filename,
                                content_type="application/octet-stream")
        response["X-Content-SHA256"] = opened.attachment.sha256
        return response
