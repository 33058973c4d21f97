"""Web pages: each area keeps its routes in its own module, included here."""
from django.contrib.auth import views as auth_views
from django.urls import include, path

from . import views, views_instance, views_task
from . import views_notifications as notify_views

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", views.inbox, name="inbox"),
    path("tasks/<int:pk>/", views_task.task_page, name="task"),
    path("tasks/<int:pk>/claim/", views_task.task_claim, name="task_claim"),
    path("tasks/<int:pk>/delegate/", views_task.task_delegate, name="task_delegate"),
    path("tasks/<int:pk>/reassign/", views_task.task_reassign, name="task_reassign"),
    path("tasks/<int:pk>/comments/", views_task.task_comment, name="task_comment"),
    path("tasks/<int:pk>/attachments/", views_task.task_attach, name="task_attach"),
    path("tasks/<int:pk>/attachments/<int:attachment_pk>/", views_task.task_attachment, name="task_attachment"),
    path("start/", views.start, name="start"),
    path("me/away/", views.away, name="away"),
    path("me/away/<int:pk>/end/", views.away_end, name="away_end"),
    path("instances/<int:pk>/", views_instance.instance_page, name="instance"),
    path("notifications/", notify_views.notifications_page, name="notifications"),
    path("notifications/<int:pk>/read/", notify_views.notification_read, name="notification_read"),
    path("notifications/read-all/", notify_views.notifications_read_all, name="notifications_read_all"),
    path("notifications/settings/", notify_views.notification_settings, name="notification_settings"),
    path("", include("approvals.urls_ops")),
    path("", include("approvals.urls_diagram")),
]
