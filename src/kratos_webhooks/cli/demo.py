"""`kratos-webhooks demo`: the receiver on embedded defaults, with nothing to install.

It makes a certificate, secrets and SQLite state under one directory, starts
the example application (`kratos_webhooks.demo_app`) and the receiver on
loopback, and prints a signed request that is accepted and one that is refused.
"""

from __future__ import annotations

import datetime
import errno
import ipaddress
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Final

import click
import yaml

from ..config import parse_config
from ..errors import ConfigError
from ..secrets import HmacKey
from ..signing import Signer
from .options import (
    EXIT_START_FAILED,
    ConfigProblem,
    reports_missing_extras,
    require_server_extra,
)

# Each Kratos hook point; sync where Kratos reads the answer (it can interrupt
# the flow or change the identity), async where only delivery matters.
HOOK_POINTS: Final = (
    ("registration", "before", "sync"),
    ("registration", "after", "sync"),
    ("login", "before", "sync"),
    ("login", "after", "sync"),
    ("settings", "before", "sync"),
    ("settings", "after", "sync"),
    ("recovery", "before", "sync"),
    ("recovery", "after", "async"),
    ("verification", "before", "sync"),
    ("verification", "after", "async"),
)
# The directory in a checkout, where examples/receiver.yaml expects the files.
CHECKOUT_DIRECTORY: Final = Path("examples/.state")
OTHER_DIRECTORY: Final = Path("kratos-webhooks-demo")
APP_START_SECONDS: Final = 10.0
# The smallest body that fits the registration.after model: a flow and an
# identity with its id, schema and traits.
DEMO_BODY: Final = (
    b'{\n   "flow": {\n      "id": "3f2c1b0a-9d8e-4f7a-8b6c-5d4e3f2a1b0c",\n'
    b'      "type": "browser"\n   },\n   "identity": {\n'
    b'      "id": "8a7b6c5d-4e3f-4a1b-9c0d-1e2f3a4b5c6d",\n'
    b'      "schema_id": "default",\n      "traits": {\n'
    b'         "email": "alex.sample@example.com"\n      }\n   }\n}\n'
)


def demo_config(
    directory: Path, *, port: int, admin_port: int, app_port: int
) -> dict[str, Any]:
    """Return the demo's configuration, with every file under `directory`."""
    routes = [
        {
            "path": f"/hooks/{flow}/{when}",
            "verify": {
                "scheme": "standard-webhooks",
                "secrets": [f"file:{directory / 'kratos-secret'}"],
            },
            "mode": mode,
            "upstream": f"http://127.0.0.1:{app_port}/kratos/{flow}/{when}",
            "upstream_secrets": [f"file:{directory / 'upstream-secret'}"],
            "hook": f"{flow}.{when}",
            # The application needs no cookie or CSRF token after the fact.
            **({"forward_redacted": True} if mode == "async" else {}),
        }
        for flow, when, mode in HOOK_POINTS
    ]
    return {
        "server": {
            "listen": f"127.0.0.1:{port}",
            "tls": {
                "cert_file": str(directory / "tls.crt"),
                "key_file": str(directory / "tls.key"),
            },
        },
        "admin": {"listen": f"127.0.0.1:{admin_port}"},
        "storage": f"sqlite://{(directory / 'state.db').as_posix()}",
        "routes": routes,
    }


def make_certificate(directory: Path) -> None:
    """Write a self-signed certificate and key for 127.0.0.1 and localhost."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    names = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    (directory / "tls.crt").write_bytes(
        certificate.public_bytes(serialization.Encoding.PEM)
    )
    _write_private(
        directory / "tls.key",
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def _write_private(path: Path, data: bytes) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)

    with os.fdopen(descriptor, "wb") as stream:
        stream.write(data)


def prepare(directory: Path, *, port: int, admin_port: int, app_port: int) -> Path:
    """Create the directory, certificate, secrets, sample body and configuration."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)

    if not (directory / "tls.crt").exists():
        make_certificate(directory)

    for name in ("kratos-secret", "upstream-secret"):
        if not (directory / name).exists():
            _write_private(directory / name, HmacKey.generate().encode().encode())

    (directory / "body.json").write_bytes(DEMO_BODY)
    config = demo_config(directory, port=port, admin_port=admin_port, app_port=app_port)
    config_file = directory / "receiver.yaml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return config_file


def curl_commands(directory: Path, port: int) -> tuple[str, str]:
    """Return a curl command that is accepted and one that is refused."""
    key = HmacKey.parse((directory / "kratos-secret").read_text().strip())
    headers = Signer(key).sign(DEMO_BODY)
    url = f"https://127.0.0.1:{port}/hooks/registration/after"
    base = [
        # curl expands the two characters \n itself, so the command stays one line.
        "curl", "-sS", "-w", " HTTP %{http_code}\\n",
        "--cacert", str(directory / "tls.crt"), url,
        "-H", "content-type: application/json",
        "--data-binary", f"@{directory / 'body.json'}",
    ]  # fmt: skip
    signed = [*base]

    for name, value in headers.items():
        signed += ["-H", f"{name}: {value}"]

    forged = [*base, "-H", f"webhook-id: {headers['webhook-id']}x"]
    forged += ["-H", f"webhook-timestamp: {headers['webhook-timestamp']}"]
    forged += ["-H", f"webhook-signature: {headers['webhook-signature']}"]
    return shlex.join(signed), shlex.join(forged)


def default_directory() -> Path:
    """Return examples/.state in a checkout, else a directory of its own."""
    if Path("examples/receiver.yaml").is_file():
        return CHECKOUT_DIRECTORY

    return OTHER_DIRECTORY


def check_ports(ports: dict[str, int]) -> None:
    """Stop with exit 3 when a port is given twice or already in use on 127.0.0.1.

    `ports` maps each option name to its port, so the message names the option
    to change.
    """
    seen: dict[int, str] = {}

    for option, port in ports.items():
        if port in seen:
            click.echo(f"{seen[port]} and {option} are both {port}", err=True)
            raise SystemExit(EXIT_START_FAILED)

        seen[port] = option

        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            # As the servers do, so that a closed connection in TIME_WAIT does
            # not count as in use.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)

            try:
                probe.bind(("127.0.0.1", port))
            except OSError as exc:
                reason = "in use" if exc.errno == errno.EADDRINUSE else exc.strerror
                click.echo(
                    f"port {port} on 127.0.0.1 is not available ({reason}):"
                    f" choose another with {option}",
                    err=True,
                )
                raise SystemExit(EXIT_START_FAILED) from exc


def command_path() -> str:
    """Return how to run this command again: its name if on PATH, else its path."""
    script = Path(sys.argv[0]).resolve()
    found = shutil.which(script.name)

    if found is not None and Path(found).resolve() == script:
        return script.name

    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)


def wait_for_app(app: subprocess.Popen[bytes], port: int) -> None:
    """Wait until the example app accepts connections; exit 3 if it stops first."""
    deadline = time.monotonic() + APP_START_SECONDS

    while time.monotonic() < deadline:
        if app.poll() is not None:
            click.echo(f"the example app stopped with code {app.returncode}", err=True)
            raise SystemExit(EXIT_START_FAILED)

        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)

    app.terminate()
    app.wait(10)
    click.echo(
        f"the example app did not listen on port {port} within {APP_START_SECONDS:g} s",
        err=True,
    )
    raise SystemExit(EXIT_START_FAILED)


@click.command("demo")
@click.option(
    "--directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    show_default="examples/.state in a checkout, else ./kratos-webhooks-demo",
    help="Directory for the certificate, secrets, configuration and SQLite state.",
)
@click.option(
    "--port", default=8443, show_default=True, help="HTTPS port of the receiver."
)
@click.option("--admin-port", default=9464, show_default=True, help="Port of /metrics.")
@click.option(
    "--app-port", default=8000, show_default=True, help="Port of the example app."
)
@reports_missing_extras("demo")
def demo(directory: Path | None, port: int, admin_port: int, app_port: int) -> None:
    """Run the receiver and the example application on loopback until Ctrl-C.

    Exit 3 when a port is in use or a server cannot start.
    """
    require_server_extra("demo")
    check_ports({"--port": port, "--admin-port": admin_port, "--app-port": app_port})
    directory = (directory or default_directory()).resolve()
    config_file = prepare(
        directory, port=port, admin_port=admin_port, app_port=app_port
    )

    try:
        config = parse_config(yaml.safe_load(config_file.read_text()))
    except ConfigError as exc:
        raise ConfigProblem.from_error(exc) from exc

    app = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [
            sys.executable, "-m", "kratos_webhooks.demo_app",
            "--port", str(app_port),
            "--secret-file", str(directory / "upstream-secret"),
        ]
    )  # fmt: skip
    wait_for_app(app, app_port)
    accepted, refused = curl_commands(directory, port)
    click.echo(f"configuration: {config_file}")
    click.echo(f"\nA signed request, accepted (valid for 5 minutes):\n{accepted}")
    click.echo(f"\nThe same signature with another webhook-id, refused:\n{refused}\n")
    click.echo(
        f"Fresh headers for any body: {shlex.quote(command_path())} sign"
        f" --secret-file {shlex.quote(str(directory / 'kratos-secret'))}"
        f" --body-file {shlex.quote(str(directory / 'body.json'))}\n"
    )

    from ..observability.logging import configure_logging
    from ..receiver.server import Receiver
    from .serve import run_service

    configure_logging(config.logging.level)

    try:
        run_service(Receiver(config).run(), "the receiver")
    finally:
        app.terminate()
        app.wait(10)
