from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from compliance.sanctions import FORMATS, sanctions_import, sanctions_rescreen
from core.errors import ValidationFailed


class Command(BaseCommand):
    help = "Import a sanctions list: OFAC sdn.csv, OpenSanctions targets.simple.csv or a CSV name,aliases,list_id; then re-screen."

    def add_arguments(self, parser):
        parser.add_argument("file", help="Path of the CSV file")
        parser.add_argument("--source", default="", help="The list's name, e.g. 'OFAC SDN' (entries are upserted by source and list_id)")
        parser.add_argument("--format", default="auto", choices=FORMATS, help="The file's format (auto: told apart by its first line)")

    def handle(self, *args, file: str, source: str, format: str = "auto", **options):
        path = Path(file)
        if not path.is_file():
            raise CommandError(f"no such file: {file}")
        try:
            result = sanctions_import(text=path.read_text(encoding="utf-8-sig"), source=source, format=format)
        except ValidationFailed as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(self.style.SUCCESS(f"Sanctions list imported: {result.created} created, {result.updated} updated."))
        if result.changed:
            screened = sanctions_rescreen()
            self.stdout.write(f"Re-screened {screened.names_checked} names: {screened.new_hits} new hit(s).")
