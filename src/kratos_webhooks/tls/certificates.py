"""Read X.509 certificates and private keys, and check a server's pair before use."""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from ..errors import ConfigError

__all__ = [
    "CertificateInfo",
    "check_server_pair",
    "describe_certificate",
    "key_file_exposed",
    "load_private_key",
    "read_certificate_chain",
]


@dataclass(frozen=True, slots=True)
class CertificateInfo:
    """The identity and validity period of one certificate.

    `sans` contains the subject alternative names as `dns:NAME`, `uri:URI` and
    `email:ADDRESS`; `fingerprint_sha256` is lower-case hex without colons.
    """

    subject: str
    common_names: tuple[str, ...]
    issuer: str
    sans: tuple[str, ...]
    fingerprint_sha256: str
    serial_number: int
    not_before: datetime
    not_after: datetime

    def seconds_left(self, now: datetime) -> float:
        """Return the seconds until expiry; negative once expired."""
        return (self.not_after - now).total_seconds()

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> CertificateInfo:
        """Rebuild the description that `as_dict` returned."""
        return cls(
            subject=document["subject"],
            common_names=tuple(document["common_names"]),
            issuer=document["issuer"],
            sans=tuple(document["sans"]),
            fingerprint_sha256=document["fingerprint_sha256"],
            serial_number=int(document["serial_number"]),
            not_before=datetime.fromisoformat(document["not_before"]),
            not_after=datetime.fromisoformat(document["not_after"]),
        )

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-ready form, with times in ISO 8601 UTC."""
        return {
            "subject": self.subject,
            "common_names": list(self.common_names),
            "issuer": self.issuer,
            "sans": list(self.sans),
            "fingerprint_sha256": self.fingerprint_sha256,
            "serial_number": str(self.serial_number),
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
        }


def describe_certificate(certificate: x509.Certificate | bytes) -> CertificateInfo:
    """Describe a certificate given as a parsed object or as DER bytes.

    Raises:
        ValueError: the bytes are not a DER certificate.
    """
    if isinstance(certificate, bytes):
        certificate = x509.load_der_x509_certificate(certificate)

    der = certificate.public_bytes(serialization.Encoding.DER)
    common_names = tuple(
        str(attribute.value)
        for attribute in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    )
    return CertificateInfo(
        subject=certificate.subject.rfc4514_string(),
        common_names=common_names,
        issuer=certificate.issuer.rfc4514_string(),
        sans=_alternative_names(certificate),
        fingerprint_sha256=hashlib.sha256(der).hexdigest(),
        serial_number=certificate.serial_number,
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
    )


def _alternative_names(certificate: x509.Certificate) -> tuple[str, ...]:
    try:
        extension = certificate.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        )
    except x509.ExtensionNotFound:
        return ()

    names = extension.value
    return (
        *(f"dns:{name}" for name in names.get_values_for_type(x509.DNSName)),
        *(
            f"uri:{uri}"
            for uri in names.get_values_for_type(x509.UniformResourceIdentifier)
        ),
        *(f"email:{email}" for email in names.get_values_for_type(x509.RFC822Name)),
        *(f"ip:{address}" for address in names.get_values_for_type(x509.IPAddress)),
    )


def read_certificate_chain(path: str) -> list[x509.Certificate]:
    """Read every certificate of a PEM file, leaf first.

    Raises:
        ConfigError: the file cannot be read or contains no PEM certificate.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"cannot read the certificate {path}: {exc.strerror}"
        ) from exc

    try:
        chain = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise ConfigError(f"{path} contains no valid PEM certificate") from exc

    return chain


def load_private_key(path: str, password: bytes | None) -> Any:
    """Read a PEM private key, decrypting it with `password` when it is encrypted.

    Raises:
        ConfigError: the file cannot be read, is not a key, or the password is
            missing or wrong.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"cannot read the private key {path}: {exc.strerror}"
        ) from exc

    try:
        return serialization.load_pem_private_key(data, password=password)
    except TypeError as exc:
        # cryptography raises TypeError for a missing or an unneeded password.
        if password is None:
            message = (
                f"the private key {path} is encrypted: set server.tls.key_password"
            )
        else:
            message = f"the private key {path} is not encrypted: remove key_password"

        raise ConfigError(message) from exc
    except ValueError as exc:
        raise ConfigError(
            f"cannot load the private key {path}: not a PEM key or a wrong key_password"
        ) from exc


def check_server_pair(
    cert_file: str,
    key_file: str,
    password: bytes | None,
    *,
    now: datetime | None = None,
) -> CertificateInfo:
    """Check that a server certificate is valid now and matches its private key.

    Raises:
        ConfigError: a file cannot be read, the certificate has expired or is
            not yet valid, or the key belongs to another certificate.
    """
    now = now or datetime.now(UTC)
    leaf = read_certificate_chain(cert_file)[0]
    info = describe_certificate(leaf)
    key = load_private_key(key_file, password)

    if info.not_after <= now:
        raise ConfigError(
            f"the server certificate {cert_file} ({info.subject}) expired on "
            f"{info.not_after:%Y-%m-%d %H:%M} UTC: renew it"
        )

    if info.not_before > now:
        raise ConfigError(
            f"the server certificate {cert_file} ({info.subject}) is not valid "
            f"before {info.not_before:%Y-%m-%d %H:%M} UTC: check the clock or "
            "the certificate"
        )

    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER

    if leaf.public_key().public_bytes(der, spki) != key.public_key().public_bytes(
        der, spki
    ):
        raise ConfigError(
            f"the private key {key_file} does not match the server certificate "
            f"{cert_file}: the first certificate of the file must be the key's"
        )

    return info


def key_file_exposed(path: str) -> bool:
    """Tell whether a key file is readable by group or others, following symlinks."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False

    return bool(mode & (stat.S_IRGRP | stat.S_IROTH))
