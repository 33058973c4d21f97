"""Routes of operators', designers' and auditors' pages (names are a contract of the templates and tests)."""
from django.urls import path, re_path

from . import views_ops

urlpatterns = [
    path("definitions/", views_ops.definitions, name="definitions"),
    path("definitions/upload/", views_ops.definition_upload, name="definition_upload"),
    path("definitions/<int:pk>/", views_ops.definition_detail, name="definition_detail"),
    path("instances/", views_ops.instances, name="instances"),
    re_path(r"^instances/(?P<pk>[0-9]+)/(?P<action>cancel|suspend|resume)/$", views_ops.instance_action,
            name="instance_action"),
    path("incidents/", views_ops.incidents, name="incidents"),
    re_path(r"^incidents/(?P<pk>[0-9]+)/(?P<action>retry|skip)/$", views_ops.incident_action, name="incident_action"),
    path("audit/", views_ops.audit, name="audit"),
    path("audit/verify/", views_ops.audit_verify, name="audit_verify"),
    path("audit/instances/<int:pk>/", views_ops.audit_instance, name="audit_instance"),
]
