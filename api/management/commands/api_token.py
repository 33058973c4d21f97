"""Create, rotate or revoke a user's API token (DRF authtoken; one token per user)."""
from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from rest_framework.authtoken.models import Token


class Command(BaseCommand):
    help = ("Print a user's API token, creating it if needed. --rotate replaces it (the old one stops "
            "working at once); --revoke deletes it.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")
        group = parser.add_mutually_exclusive_group()
        group.add_argument("--rotate", action="store_true", help="replace the existing token")
        group.add_argument("--revoke", action="store_true", help="delete the token")

    def handle(self, *args, username: str, rotate: bool, revoke: bool, **options) -> None:
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user '{username}'")
        with transaction.atomic():
            if revoke:
                deleted, _ = Token.objects.filter(user=user).delete()
                self.stdout.write(f"revoked token of {username}" if deleted else f"{username} had no token")
                return
            if rotate:
                Token.objects.filter(user=user).delete()
            token, _ = Token.objects.get_or_create(user=user)
        self.stdout.write(token.key)
