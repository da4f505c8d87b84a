"""Test certificates made by trustme, and in-memory TLS handshakes between contexts."""

from __future__ import annotations

import hashlib
import ssl
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

CLIENT_NAME = "relay.internal"


def now() -> datetime:
    return datetime.now(UTC)


def write_pair(cert: trustme.LeafCert, directory: Path, stem: str) -> tuple[Path, Path]:
    """Write a leaf's chain and key as `<stem>.crt` and `<stem>.key`."""
    cert_file = directory / f"{stem}.crt"
    key_file = directory / f"{stem}.key"
    cert_file.write_bytes(b"".join(pem.bytes() for pem in cert.cert_chain_pems))
    key_file.write_bytes(cert.private_key_pem.bytes())
    key_file.chmod(0o600)
    return cert_file, key_file


@dataclass
class Pki:
    """A server CA and its certificate, a client CA, and a CA nobody trusts."""

    directory: Path
    server_ca: trustme.CA = field(default_factory=trustme.CA)
    client_ca: trustme.CA = field(default_factory=trustme.CA)
    other_ca: trustme.CA = field(default_factory=trustme.CA)

    def __post_init__(self) -> None:
        self.server = self.server_ca.issue_cert("127.0.0.1", "localhost")
        self.cert_file, self.key_file = write_pair(
            self.server, self.directory, "server"
        )
        self.client_ca_file = self.directory / "client-ca.pem"
        self.client_ca.cert_pem.write_to_path(self.client_ca_file)

    def client(
        self,
        common_name: str = CLIENT_NAME,
        *identities: str,
        ca: trustme.CA | None = None,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
    ) -> trustme.LeafCert:
        """Issue a client certificate, by the client CA unless `ca` is given."""
        return (ca or self.client_ca).issue_cert(
            *(identities or (common_name,)),
            common_name=common_name,
            not_before=not_before,
            not_after=not_after,
        )

    def client_context(
        self, cert: trustme.LeafCert | None = None, **settings: object
    ) -> ssl.SSLContext:
        """A client context that trusts the server CA and presents `cert`."""
        context = ssl.create_default_context()
        self.server_ca.configure_trust(context)

        if cert is not None:
            cert.configure_cert(context)

        for name, value in settings.items():
            if name == "ciphers":
                context.set_ciphers(str(value))
            else:
                setattr(context, name, value)

        return context


def fingerprint(cert: trustme.LeafCert) -> str:
    der = x509.load_pem_x509_certificate(cert.cert_chain_pems[0].bytes()).public_bytes(
        serialization.Encoding.DER
    )
    digest = hashes.Hash(hashes.SHA256())
    digest.update(der)
    return digest.finalize().hex()


def certificate_with_uri(ca: trustme.CA, uri: str) -> x509.Certificate:
    """Issue a certificate whose only SAN is a URI, which trustme cannot do."""
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
    ca_key = serialization.load_pem_private_key(ca.private_key_pem.bytes(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "workload")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now() - timedelta(hours=1))
        .not_valid_after(now() + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )


@dataclass
class TlsPair:
    """Both ends of an in-memory TLS connection and the server's handshake error."""

    server: ssl.SSLObject
    client: ssl.SSLObject
    error: Exception | None
    to_server: ssl.MemoryBIO
    from_server: ssl.MemoryBIO
    to_client: ssl.MemoryBIO
    from_client: ssl.MemoryBIO

    def send_to_server(self, data: bytes) -> bytes:
        """Write `data` on the client end and return what the server end reads."""
        self.client.write(data)
        self.to_server.write(self.from_client.read())
        return self.server.read(len(data))

    def served_fingerprint(self) -> str:
        """The SHA-256 fingerprint of the certificate the server presented."""
        der = self.client.getpeercert(binary_form=True)
        assert der is not None
        return hashlib.sha256(der).hexdigest()


def handshake(
    server: ssl.SSLContext, client: ssl.SSLContext, *, rounds: int = 20
) -> TlsPair:
    """Run a handshake in memory; the result holds the server's error, if any.

    The client's handshake may finish first: in TLS 1.3 the server checks the
    client certificate after the client has sent its last handshake message.
    """
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    from_server, from_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    server_end = server.wrap_bio(to_server, from_server, server_side=True)
    client_end = client.wrap_bio(to_client, from_client, server_hostname="localhost")
    server_done = client_done = False
    server_error: Exception | None = None

    for _ in range(rounds):
        if not client_done:
            try:
                client_end.do_handshake()
                client_done = True
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                pass
            except ssl.SSLError:
                client_done = True

        to_server.write(from_client.read())

        if not server_done:
            try:
                server_end.do_handshake()
                server_done = True
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                pass
            except ssl.SSLError as error:
                server_error = error
                server_done = True

        to_client.write(from_server.read())

        if server_done and client_done:
            break

    return TlsPair(
        server_end,
        client_end,
        server_error,
        to_server,
        from_server,
        to_client,
        from_client,
    )
