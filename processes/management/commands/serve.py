"""Serve Baton for the embedded default: the web server plus the in-process worker."""
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Run the development web server with the embedded job/timer worker (no broker needed)."

    def add_arguments(self, parser):
        parser.add_argument("addrport", nargs="?", default="127.0.0.1:8000")

    def handle(self, *args, addrport: str, **options):
        if settings.BATON_EMBEDDED_WORKER:
            from processes import embedded

            embedded.start()
            self.stdout.write("Embedded worker started (jobs and timers run in this process).")
        else:
            self.stdout.write("CELERY_BROKER_URL is set: run `python manage.py runworker` and `runbeat` too.")
        call_command("runserver", addrport, use_reloader=False)
