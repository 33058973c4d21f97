"""Routes of operators', designers' and auditors' pages."""
from django.urls import path  # noqa: F401

urlpatterns: list = []
