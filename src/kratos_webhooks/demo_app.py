"""A small application behind the receiver: it checks that each call came from it.

`kratos-webhooks demo` runs it as
`python -m kratos_webhooks.demo_app --port 8000 --secret-file upstream-secret`.

The receiver signs every call to the application with the route's
`upstream_secrets` (Standard Webhooks headers). This app verifies that
signature, prints one line per event, and answers as Kratos expects: 204 for
most hooks, and a flow interrupt for registrations from `blocked.example.com`.
"""

from __future__ import annotations

import argparse
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from kratos_webhooks import HmacKey, VerificationError, Verifier

BLOCKED_DOMAIN = "@blocked.example.com"
INTERRUPT = {
    "messages": [
        {
            "instance_ptr": "#/traits/email",
            "messages": [
                {
                    "id": 10000001,
                    "text": "This e-mail domain is blocked.",
                    "type": "error",
                }
            ],
        }
    ]
}


def make_handler(verifier: Verifier) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            headers = {name.lower(): value for name, value in self.headers.items()}

            try:
                delivery = verifier.verify(body, headers)
            except VerificationError as error:
                self.answer(401, {"error": error.code})
                return

            event = json.loads(body)
            email = str(event.get("identity", {}).get("traits", {}).get("email", ""))
            print(f"{self.path}: webhook-id {delivery.msg_id}", flush=True)

            if self.path.startswith("/kratos/registration") and email.endswith(
                BLOCKED_DOMAIN
            ):
                self.answer(400, INTERRUPT)
                return

            self.answer(204, None)

        def answer(self, status: int, document: object) -> None:
            payload = b"" if document is None else json.dumps(document).encode()
            self.send_response(status)

            if payload:
                self.send_header("content-type", "application/json")

            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:
            """Keep quiet: the request line is printed by do_POST."""

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description="The example application.")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--secret-file", type=Path, required=True)
    arguments = parser.parse_args()
    key = HmacKey.parse(arguments.secret_file.read_text().strip())
    server = ThreadingHTTPServer(
        ("127.0.0.1", arguments.port), make_handler(Verifier(key))
    )
    print(f"example app on http://127.0.0.1:{arguments.port}", flush=True)

    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
