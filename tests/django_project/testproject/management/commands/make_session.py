from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.test import Client


class Command(BaseCommand):
    help = (
        "Log a user in (creating it if absent) and print only the session key, "
        "the value for the session cookie."
    )

    def add_arguments(self, parser):
        parser.add_argument("--username", required=True)
        parser.add_argument("--password", default="password")

    def handle(self, *args, username, password, **options):
        User = get_user_model()
        if not User.objects.filter(username=username).exists():
            User.objects.create_user(username=username, password=password)

        # A real login: authenticate() checks the password and a session row is saved.
        client = Client()
        if not client.login(username=username, password=password):
            raise CommandError(
                f"cannot log in as {username!r}: wrong password for an existing user?"
            )
        self.stdout.write(client.cookies[settings.SESSION_COOKIE_NAME].value)
