from django.apps import AppConfig


class ProcessesConfig(AppConfig):
    name = "processes"
    verbose_name = "Process instances"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Record every published definition on the ``definitions`` audit chain; schedule its start timers."""
        from bpmn.signals import definition_published

        from .audit import definition_published_receiver
        from .timers import schedules_published_receiver
        from . import webhooks  # noqa: F401 - connects the subscription-cache receivers

        definition_published.connect(definition_published_receiver, dispatch_uid="processes.audit.definition_published")
        definition_published.connect(schedules_published_receiver, dispatch_uid="processes.timers.schedules")
