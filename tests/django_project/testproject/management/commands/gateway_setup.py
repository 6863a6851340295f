from django.core.management import call_command
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Prepare a fresh test database: apply all migrations, quietly."

    def handle(self, *args, **options):
        call_command("migrate", interactive=False, verbosity=0)
