"""Web pages: each area keeps its routes in its own module, included here."""
from django.contrib.auth import views as auth_views
from django.urls import include, path

from . import views, views_instance
from . import views_notifications as notify_views

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", views.inbox, name="inbox"),
    path("tasks/<int:pk>/", views.task_page, name="task"),
    path("tasks/<int:pk>/claim/", views.task_claim, name="task_claim"),
    path("start/", views.start, name="start"),
    path("instances/<int:pk>/", views_instance.instance_page, name="instance"),
    path("notifications/", notify_views.notifications_page, name="notifications"),
    path("notifications/<int:pk>/read/", notify_views.notification_read, name="notification_read"),
    path("notifications/read-all/", notify_views.notifications_read_all, name="notifications_read_all"),
    path("notifications/settings/", notify_views.notification_settings, name="notification_settings"),
    path("", include("approvals.urls_ops")),
    path("", include("approvals.urls_diagram")),
]
