"""A listener's TLS context that follows its files: reload on change and on SIGHUP.

The listener is given a `SwitchingContext` once. Each new connection takes
the newest loaded context, because `wrap_bio`, which asyncio and uvloop call
once per accepted connection, is passed on to it. Open connections keep the
context they started with, so a reload drops none of them. A reload that fails
(a half-written renewal, a key that does not match, an expired certificate)
keeps the previous context and is logged.

The files are read again every second, through their symlinks, so a renewal
is seen whichever way it lands: certbot writes new files into `archive/NAME/`
and swaps the `live/NAME/*.pem` symlinks, and Kubernetes swaps a secret
volume's `..data` symlink. A change is loaded once two readings in a row agree,
so a renewal that writes several files is loaded whole. Reading a few small
files each second costs less than watching their folders for changes, which
wakes on every write there: a state database kept beside the certificate
writes thousands of times a second under load.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ssl
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import structlog

from ..errors import ConfigError
from ..observability.logging import SERVER_LOGGER
from .certificates import CertificateInfo, check_server_pair, key_file_exposed
from .context import build_server_context, key_password
from .handshake import HandshakeRefusal

if TYPE_CHECKING:
    from ..config import TlsConfig
    from ..observability.metrics import TlsMetrics

__all__ = [
    "EXPIRY_WARNING_SECONDS",
    "ManagedServerTls",
    "SwitchingContext",
]

EXPIRY_WARNING_SECONDS: Final = 14 * 86_400
# How often a long-running listener looks at its certificate's expiry.
EXPIRY_CHECK_SECONDS: Final = 6 * 3600.0
# How often the files are read to look for a renewal.
RELOAD_CHECK_SECONDS: Final = 1.0


class SwitchingContext(ssl.SSLContext):
    """A listener's context that hands each new connection to the current context.

    Only `wrap_bio` and `wrap_socket` are passed on; the settings of this
    object itself are never used for a handshake.
    """

    _current: ssl.SSLContext

    def __new__(cls, current: ssl.SSLContext) -> SwitchingContext:
        self = super().__new__(cls, ssl.PROTOCOL_TLS_SERVER)
        self._current = current
        return self

    def __init__(self, current: ssl.SSLContext) -> None:
        super().__init__()

    @property
    def current(self) -> ssl.SSLContext:
        return self._current

    def switch(self, context: ssl.SSLContext) -> None:
        """Use `context` for connections accepted from now on."""
        self._current = context

    def wrap_bio(
        self,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool = False,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLObject:
        return self._current.wrap_bio(
            incoming,
            outgoing,
            server_side=server_side,
            server_hostname=server_hostname,
            session=session,
        )

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        return self._current.wrap_socket(*args, **kwargs)


class ManagedServerTls:
    """The TLS of one listener: its context, certificate, reloads and expiry.

    Build it with `load`, give `context` to the listener, then run `watch`
    beside the server and call `reload` on SIGHUP.
    """

    def __init__(
        self,
        tls: TlsConfig,
        *,
        listener: str,
        metrics: TlsMetrics | None,
        logger_name: str,
        clock: Callable[[], datetime],
    ) -> None:
        self._tls = tls
        self._listener = listener
        self._metrics = metrics
        self._log = structlog.stdlib.get_logger(logger_name)
        self._clock = clock
        self._fingerprint = ""
        self.certificate: CertificateInfo
        self.context: SwitchingContext

    @classmethod
    def load(
        cls,
        tls: TlsConfig,
        *,
        listener: str = "https",
        metrics: TlsMetrics | None = None,
        logger_name: str = SERVER_LOGGER,
        clock: Callable[[], datetime] | None = None,
    ) -> ManagedServerTls:
        """Load and check the files, warning about an exposed key or near expiry.

        Raises:
            ConfigError: a file cannot be read, the key password cannot be
                resolved, the certificate is expired or not yet valid, or the
                key does not match it.
        """
        managed = cls(
            tls,
            listener=listener,
            metrics=metrics,
            logger_name=logger_name,
            clock=clock or (lambda: datetime.now(UTC)),
        )
        context, certificate = managed._build()
        managed.context = SwitchingContext(context)
        managed.certificate = certificate
        managed._fingerprint = managed._files_fingerprint()

        if key_file_exposed(tls.key_file):
            managed._log.warning(
                "tls_key_exposed",
                listener=listener,
                key_file=tls.key_file,
                message="the private key is readable by group or others: chmod 600",
            )

        managed._log.info(
            "tls_certificate_loaded",
            listener=listener,
            subject=certificate.subject,
            fingerprint=certificate.fingerprint_sha256,
            not_after=certificate.not_after.isoformat(),
        )
        managed.check_expiry()

        if metrics is not None:
            metrics.watch_expiry(listener, managed.seconds_left)

        return managed

    def seconds_left(self) -> float:
        """Return the seconds until the current server certificate expires."""
        return self.certificate.seconds_left(self._clock())

    def check_expiry(self) -> None:
        """Log a warning when the certificate expires within 14 days."""
        seconds = self.seconds_left()

        if seconds >= EXPIRY_WARNING_SECONDS:
            return

        self._log.warning(
            "tls_certificate_expiring",
            listener=self._listener,
            subject=self.certificate.subject,
            not_after=self.certificate.not_after.isoformat(),
            days_left=round(seconds / 86_400, 1),
        )

    def reload(self) -> bool:
        """Load the files again and use them for new connections.

        Returns False, and keeps the current context, if the new files are
        unusable.
        """
        fingerprint = self._files_fingerprint()

        try:
            context, certificate = self._build()
        except ConfigError as exc:
            self._count_reload("failed")
            self._log.error(
                "tls_reload_failed",
                listener=self._listener,
                error=str(exc),
                detail=[message for _, message in exc.problems],
            )
            return False

        self.context.switch(context)
        self.certificate = certificate
        self._fingerprint = fingerprint
        self._count_reload("loaded")
        self._log.info(
            "tls_reloaded",
            listener=self._listener,
            subject=certificate.subject,
            fingerprint=certificate.fingerprint_sha256,
            not_after=certificate.not_after.isoformat(),
        )
        self.check_expiry()
        return True

    def reload_if_changed(self) -> bool:
        """Reload when a file's content differs from the loaded one."""
        if self._files_fingerprint() == self._fingerprint:
            return False

        return self.reload()

    async def watch(self, stop: asyncio.Event) -> None:
        """Reload on file changes and check expiry until `stop` is set."""
        expiry = asyncio.create_task(self._check_expiry_periodically(stop))
        seen = failed = self._fingerprint

        try:
            while not await _stopped(stop, RELOAD_CHECK_SECONDS):
                # Read in a thread, because a network file system may be slow.
                current = await asyncio.to_thread(self._files_fingerprint)
                settled = current == seen and current != self._fingerprint

                # Files that failed to load are tried again once they change,
                # not every second.
                if settled and current != failed and not self.reload():
                    failed = current

                seen = current
        finally:
            expiry.cancel()

    async def _check_expiry_periodically(self, stop: asyncio.Event) -> None:
        while not await _stopped(stop, EXPIRY_CHECK_SECONDS):
            self.check_expiry()

    def _build(self) -> tuple[ssl.SSLContext, CertificateInfo]:
        tls = self._tls
        password = key_password(tls)
        certificate = check_server_pair(
            tls.cert_file, tls.key_file, password, now=self._clock()
        )
        context = build_server_context(
            tls, password=password, on_refusal=self._on_refusal
        )
        return context, certificate

    def _on_refusal(self, refusal: HandshakeRefusal) -> None:
        if self._metrics is not None:
            self._metrics.handshake_failures.labels(
                self._listener, refusal.reason
            ).inc()

        certificate = refusal.certificate
        self._log.warning(
            "tls_handshake_rejected",
            listener=self._listener,
            reason=refusal.reason,
            detail=refusal.detail,
            subject=certificate.subject if certificate else None,
            fingerprint=certificate.fingerprint_sha256 if certificate else None,
        )

    def _count_reload(self, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.reloads.labels(self._listener, outcome).inc()

    def _paths(self) -> list[str]:
        tls = self._tls
        paths = [tls.cert_file, tls.key_file]

        if tls.client_ca_file is not None:
            paths.append(tls.client_ca_file)

        return paths

    def _files_fingerprint(self) -> str:
        digest = hashlib.sha256()

        for path in self._paths():
            try:
                digest.update(Path(path).read_bytes())
            except OSError:
                digest.update(b"\0missing")

            digest.update(b"\0")

        return digest.hexdigest()


async def _stopped(stop: asyncio.Event, seconds: float) -> bool:
    """Wait up to `seconds` for `stop`; return whether it is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)

    return stop.is_set()
