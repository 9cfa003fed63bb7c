"""A small webhook receiver for trying Coffer locally: verifies every delivery with the
receiver-side Standard Webhooks library and prints the event.

    .venv/bin/python scripts/webhook_receiver.py --port 9000 --secret whsec_...
"""

import argparse
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook, WebhookVerificationError


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--secret", required=True, help="the whsec_... secret shown when the endpoint was created")
    args = parser.parse_args()
    verifier = Webhook(args.secret)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                event = verifier.verify(body, dict(self.headers))
            except WebhookVerificationError as exc:
                print(f"REFUSED {self.headers.get('webhook-id')}: {exc}", flush=True)
                self.send_response(400)
                self.end_headers()
                return
            print(f"verified {self.headers.get('webhook-id')}: {json.dumps(event)}", flush=True)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):  # the print above is the log
            pass

    print(f"listening on http://127.0.0.1:{args.port}/", flush=True)
    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
