from django.apps import AppConfig


class ApprovalsConfig(AppConfig):
    name = "approvals"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Register the separation-of-duties rules with the engine's hook (once)."""
        from processes.hooks import register_check

        from .rules import separation_of_duties

        register_check(separation_of_duties)

        # T1: computed candidates / due dates on opening tasks, acting_for and notes on finished commands,
        # and deactivated users' tasks going back to their candidates.
        from processes.hooks import on_command_finished, on_tasks_opening

        from . import candidates, people

        on_tasks_opening(candidates.tasks_opening)
        on_command_finished(candidates.command_finished)
        people.connect_signals()

        # N: notifications of new tasks, escalations and decisions; due-date reminders from the sweeper.
        from processes.hooks import on_command_finished as on_finished, on_sweep

        from . import notifications

        on_finished(notifications.command_notify)
        on_sweep(notifications.reminders_send)

        # Q: N-of-M / quorum votes: vote tasks are voted on, not claimed; voters snapshot when a task opens.
        from processes.hooks import on_command_finished as on_vote_finished, on_tasks_opening as on_vote_opening

        from . import voting

        register_check(voting.vote_task_rules)
        on_vote_opening(voting.on_tasks_opening)
        on_vote_finished(voting.on_command_finished)
