"""Web pages (login, inbox, task, start, instance)."""
from django.contrib.auth import views as auth_views
from django.urls import path

from . import views

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", views.inbox, name="inbox"),
    path("tasks/<int:pk>/", views.task_page, name="task"),
    path("tasks/<int:pk>/claim/", views.task_claim, name="task_claim"),
    path("start/", views.start, name="start"),
    path("instances/<int:pk>/", views.instance_page, name="instance"),
]
