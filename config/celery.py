"""The Celery application (production mode: ``CELERY_BROKER_URL`` set).

Run workers with ``celery -A config worker`` (or ``python manage.py runworker``)
and exactly one beat with ``celery -A config beat``.
"""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("baton")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["processes"])
