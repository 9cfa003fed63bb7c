import time

from django.core.management.base import BaseCommand

from compliance.audit import audit_chain_advance, audit_counts_flush


class Command(BaseCommand):
    help = (
        "Link committed audit events into the keyed hash chain (and write the counted failed-authentication "
        "events of ended minutes). Once by default; --loop keeps running, as an alternative to the beat task. "
        "Only one sequencer links at a time (an advisory lock); others skip."
    )

    def add_arguments(self, parser):
        parser.add_argument("--loop", action="store_true", help="Run until interrupted")
        parser.add_argument("--interval", type=float, default=1.0, help="Seconds between runs with --loop (default 1)")
        parser.add_argument("--iterations", type=int, default=0, help="With --loop, stop after this many runs (0: never)")

    def handle(self, *args, loop: bool, interval: float, iterations: int, **options):
        runs = 0
        while True:
            counted = audit_counts_flush()
            result = audit_chain_advance()
            runs += 1
            if result.halted:
                self.stderr.write(f"Audit sequencer halted: {result.halted}")
            elif result.skipped:
                self.stdout.write("Another sequencer is running; skipped.")
            elif result.linked or counted or not loop:
                self.stdout.write(f"Linked {result.linked} events (head sequence {result.head_sequence}); {counted} counted events written.")
            if not loop or (iterations and runs >= iterations):
                return
            try:
                time.sleep(interval)
            except KeyboardInterrupt:
                return
