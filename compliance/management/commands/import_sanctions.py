from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from compliance.sanctions import sanctions_import
from core.errors import ValidationFailed


class Command(BaseCommand):
    help = "Import a sanctions list CSV (header: name,aliases,list_id; aliases separated by ';' or '|')."

    def add_arguments(self, parser):
        parser.add_argument("file", help="Path of the CSV file")
        parser.add_argument("--source", default="", help="The list's name, e.g. 'OFAC SDN' (entries are upserted by source and list_id)")

    def handle(self, *args, file: str, source: str, **options):
        path = Path(file)
        if not path.is_file():
            raise CommandError(f"no such file: {file}")
        try:
            result = sanctions_import(text=path.read_text(encoding="utf-8-sig"), source=source)
        except ValidationFailed as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(self.style.SUCCESS(f"Sanctions list imported: {result.created} created, {result.updated} updated."))
