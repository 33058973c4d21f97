"""Baton's Celery app for the chaos tests' worker: ``celery -A tests.chaos.worker_app worker``.

It is ``config.celery.app`` with its settings unchanged, plus one isolation
step: every Redis key the broker uses is prefixed with
``$BATON_TEST_BROKER_PREFIX`` (kombu's ``global_keyprefix``), so two test
sessions sharing one Redis database never consume each other's messages, and
the session can delete its own keys (queues, unacked messages) at the end.
"""
import os

from config.celery import app

_prefix = os.environ.get("BATON_TEST_BROKER_PREFIX", "")
if _prefix:
    app.conf.broker_transport_options = {**app.conf.broker_transport_options, "global_keyprefix": _prefix}

__all__ = ["app"]
