from django.apps import AppConfig


class ApprovalsConfig(AppConfig):
    name = "approvals"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Register the separation-of-duties rules with the engine's hook (once)."""
        from processes.hooks import register_check

        from .rules import separation_of_duties

        register_check(separation_of_duties)
