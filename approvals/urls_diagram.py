"""Routes of the diagram viewer's data."""
from django.urls import path  # noqa: F401

urlpatterns: list = []
