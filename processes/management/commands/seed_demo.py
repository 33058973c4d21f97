"""Load the demo: users (printed with passwords), sample processes, a few instances."""
from django.core.management.base import BaseCommand

from processes.demo import demo_definitions, demo_instances, demo_users


class Command(BaseCommand):
    help = "Create demo users, load the sample processes and start a few instances (idempotent)."

    def handle(self, *args, **options):
        users = demo_users()
        keys = demo_definitions()
        started = demo_instances()
        self.stdout.write("Demo users (username / password / groups):")
        for user in users:
            groups = ", ".join(user.groups) or ("superuser" if user.superuser else "-")
            self.stdout.write(f"  {user.username:<8} {user.password:<13} {groups}")
        self.stdout.write(f"Sample processes: {', '.join(sorted(set(keys)))}")
        if started:
            self.stdout.write(f"Started {started} demo instances.")
        self.stdout.write("Open http://127.0.0.1:8000/ (inbox; e.g. mike / mike-demo), /api/docs/ (API), /admin/ (admin / admin-demo)")
