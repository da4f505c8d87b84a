"""Per-route rules on the client certificate: allowed subjects, SANs, fingerprints."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from ..errors import ClientCertificateRejected

if TYPE_CHECKING:
    from .certificates import CertificateInfo

__all__ = [
    "SAN_KINDS",
    "ClientCertificateRules",
    "normalise_fingerprint",
    "normalise_san",
]

SAN_KINDS: Final = ("dns", "uri", "email")
_HEX_FINGERPRINT: Final = re.compile(r"[0-9a-f]{64}")


def normalise_fingerprint(text: str) -> str:
    """Return a SHA-256 fingerprint as 64 lower-case hex digits.

    Raises:
        ValueError: the text is not 32 bytes of hex, with or without colons.
    """
    digits = text.replace(":", "").strip().lower()

    if not _HEX_FINGERPRINT.fullmatch(digits):
        raise ValueError(f"{text!r} is not a SHA-256 fingerprint (64 hex digits)")

    return digits


def normalise_san(text: str) -> str:
    """Return a SAN rule as `kind:value` with a lower-case kind.

    DNS names and e-mail addresses compare without case; URIs compare exactly.

    Raises:
        ValueError: the kind is not dns, uri or email, or the value is empty.
    """
    kind, separator, value = text.partition(":")
    kind = kind.strip().lower()

    if not separator or kind not in SAN_KINDS or not value:
        raise ValueError(
            f"{text!r} is not a SAN rule: write dns:NAME, uri:URI or email:ADDRESS"
        )

    return f"{kind}:{value if kind == 'uri' else value.lower()}"


@dataclass(frozen=True, slots=True)
class ClientCertificateRules:
    """The client certificates one route accepts; one match in any set is enough."""

    subjects: frozenset[str]
    sans: frozenset[str]
    fingerprints: frozenset[str]

    @classmethod
    def build(
        cls,
        subjects: Iterable[str] = (),
        sans: Iterable[str] = (),
        fingerprints: Iterable[str] = (),
    ) -> ClientCertificateRules:
        """Build the rules from configured values.

        Raises:
            ValueError: a SAN rule or a fingerprint is malformed.
        """
        return cls(
            subjects=frozenset(subjects),
            sans=frozenset(normalise_san(san) for san in sans),
            fingerprints=frozenset(normalise_fingerprint(f) for f in fingerprints),
        )

    def check(self, certificate: CertificateInfo | None) -> None:
        """Accept a verified client certificate that matches one rule.

        Raises:
            ClientCertificateRejected: no certificate was presented, or it
                matches no subject, SAN or fingerprint of the route.
        """
        if certificate is None:
            raise ClientCertificateRejected("This route requires a client certificate.")

        if certificate.fingerprint_sha256 in self.fingerprints:
            return

        if any(name in self.subjects for name in certificate.common_names):
            return

        if any(_san_key(san) in self.sans for san in certificate.sans):
            return

        raise ClientCertificateRejected()


def _san_key(san: str) -> str:
    kind, _, value = san.partition(":")
    return f"{kind}:{value if kind == 'uri' else value.lower()}"
