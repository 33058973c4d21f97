"""Routes of the REST API: ``/api/v1/...`` plus the OpenAPI schema and offline Swagger UI."""
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.permissions import AllowAny

from . import audit, definitions, incidents, instances, messages, tasks, webhooks
from . import notifications
from . import people
from . import discussion
from .errors import not_found

v1 = [
    path("definitions/", definitions.DefinitionListView.as_view(), name="definitions"),
    path("definitions/<str:process_key>/", definitions.DefinitionDetailView.as_view(), name="definition"),
    path("definitions/<str:process_key>/xml/", definitions.DefinitionXmlView.as_view(), name="definition-xml"),
    path("instances/", instances.InstanceListView.as_view(), name="instances"),
    path("instances/<int:instance_id>/", instances.InstanceDetailView.as_view(), name="instance"),
    path("instances/<int:instance_id>/cancel/", instances.InstanceCancelView.as_view(), name="instance-cancel"),
    path("instances/<int:instance_id>/suspend/", instances.InstanceSuspendView.as_view(), name="instance-suspend"),
    path("instances/<int:instance_id>/resume/", instances.InstanceResumeView.as_view(), name="instance-resume"),
    path("instances/<int:instance_id>/history/", instances.InstanceHistoryView.as_view(), name="instance-history"),
    path("instances/<int:instance_id>/diagram-state/", instances.InstanceDiagramStateView.as_view(),
         name="instance-diagram-state"),
    path("tasks/", tasks.TaskListView.as_view(), name="tasks"),
    path("tasks/<int:task_id>/", tasks.TaskDetailView.as_view(), name="task"),
    path("tasks/<int:task_id>/claim/", tasks.TaskClaimView.as_view(), name="task-claim"),
    path("tasks/<int:task_id>/release/", tasks.TaskReleaseView.as_view(), name="task-release"),
    path("tasks/<int:task_id>/delegate/", tasks.TaskDelegateView.as_view(), name="task-delegate"),
    path("tasks/<int:task_id>/reassign/", tasks.TaskReassignView.as_view(), name="task-reassign"),
    path("tasks/<int:task_id>/decide/", tasks.TaskDecideView.as_view(), name="task-decide"),
    path("tasks/<int:task_id>/comments/", discussion.TaskCommentListView.as_view(), name="task-comments"),
    path("tasks/<int:task_id>/attachments/", discussion.TaskAttachmentListView.as_view(), name="task-attachments"),
    path("tasks/<int:task_id>/attachments/<int:attachment_id>/", discussion.TaskAttachmentDownloadView.as_view(),
         name="task-attachment"),
    path("stand-ins/", people.StandInListView.as_view(), name="stand-ins"),
    path("stand-ins/<int:standin_id>/end/", people.StandInEndView.as_view(), name="stand-in-end"),
    path("incidents/", incidents.IncidentListView.as_view(), name="incidents"),
    path("incidents/<int:incident_id>/retry/", incidents.IncidentRetryView.as_view(), name="incident-retry"),
    path("incidents/<int:incident_id>/skip/", incidents.IncidentSkipView.as_view(), name="incident-skip"),
    path("messages/", messages.MessageCorrelateView.as_view(), name="messages"),
    path("signals/", messages.SignalBroadcastView.as_view(), name="signals"),
    path("audit/instances/<int:instance_id>/events/", audit.InstanceAuditView.as_view(), name="audit-events"),
    path("audit/verify/", audit.AuditVerifyView.as_view(), name="audit-verify"),
    path("webhooks/", webhooks.WebhookListView.as_view(), name="webhooks"),
    path("webhooks/deliveries/", webhooks.WebhookDeliveryListView.as_view(), name="webhook-deliveries"),
    path("webhooks/<int:subscription_id>/", webhooks.WebhookDetailView.as_view(), name="webhook"),
    path("notifications/", notifications.NotificationListView.as_view(), name="notifications"),
    path("notifications/read-all/", notifications.NotificationReadAllView.as_view(), name="notifications-read-all"),
    path("notifications/<int:notification_id>/read/", notifications.NotificationReadView.as_view(),
         name="notification-read"),
]

app_name = "api"
urlpatterns = [
    path("v1/", include(v1)),
    path("schema/", SpectacularAPIView.as_view(permission_classes=[AllowAny]), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema", permission_classes=[AllowAny]), name="docs"),
    re_path(r"^(?P<unmatched>.*)$", not_found),  # last: unknown API URLs get the JSON error body too
]
