"""Start Celery beat, which runs the sweeper (run exactly one per deployment)."""
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Run Celery beat for the sweeper (exactly one per deployment; needs CELERY_BROKER_URL)."

    def add_arguments(self, parser):
        parser.add_argument("celery_args", nargs="*")

    def handle(self, *args, celery_args: list[str], **options):
        from django.conf import settings

        from config.celery import app

        if not settings.CELERY_BROKER_URL:
            raise CommandError("CELERY_BROKER_URL is not set; the embedded default sweeps in `manage.py serve`")
        app.start(["beat", "--loglevel=INFO", "--schedule", str(settings.VAR_DIR / "celerybeat-schedule"), *celery_args])
