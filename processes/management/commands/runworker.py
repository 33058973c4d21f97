"""Start a Celery worker for Baton's jobs (production mode)."""
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Run a Celery worker (needs CELERY_BROKER_URL). Extra arguments go to `celery worker`."

    def add_arguments(self, parser):
        parser.add_argument("celery_args", nargs="*")

    def handle(self, *args, celery_args: list[str], **options):
        from django.conf import settings

        from config.celery import app

        if not settings.CELERY_BROKER_URL:
            raise CommandError("CELERY_BROKER_URL is not set; the embedded default runs jobs in `manage.py serve`")
        app.worker_main(["worker", "--loglevel=INFO", *celery_args])
