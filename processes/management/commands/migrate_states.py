"""Upgrade stored workflow states after a SpiffWorkflow upgrade."""
from __future__ import annotations

from django.core.management.base import BaseCommand
from django.db import transaction

from processes.engine.serializer import SERIALIZER_VERSION, state_migrate
from processes.models import ProcessInstance


class Command(BaseCommand):
    help = "Migrate every stored instance state to the serializer version this Baton reads."

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="report what would change, write nothing")

    def handle(self, *args, dry_run: bool = False, **options):
        stale = ProcessInstance.objects.exclude(serializer_version=SERIALIZER_VERSION).values_list("pk", flat=True)
        migrated = 0
        for pk in stale.iterator():
            with transaction.atomic():
                instance = ProcessInstance.objects.select_for_update().select_related("definition").get(pk=pk)
                new_state = state_migrate(
                    instance.state, definition_id=instance.definition_id, spec_bundle=instance.definition.spec_bundle
                )
                if new_state is not None and not dry_run:
                    instance.state = new_state
                    instance.serializer_version = SERIALIZER_VERSION
                    instance.save(update_fields=["state", "serializer_version"])
                migrated += new_state is not None
        verb = "would migrate" if dry_run else "migrated"
        self.stdout.write(f"{verb} {migrated} instance(s); states now at {SERIALIZER_VERSION}")
