from django.apps import AppConfig


class BpmnConfig(AppConfig):
    name = "bpmn"
    verbose_name = "BPMN definitions"
    default_auto_field = "django.db.models.BigAutoField"
