"""Top-level URL routes."""
from django.contrib import admin
from django.urls import include, path

from core.views import health, metrics

urlpatterns = [
    path("admin/", admin.site.urls),
    path("health/", health, name="health"),
    path("metrics", metrics, name="metrics"),  # Prometheus text format (docs/operations.md)
    path("api/", include("api.urls")),
    path("", include("approvals.urls")),  # web pages  # /api/v1/..., /api/schema/, /api/docs/
]
