"""Transport security shared by the receiver and the relay.

- `managed.ManagedServerTls.load(tls_config)` returns a listener's managed
  context: hardened settings, handshake refusals logged, files reloaded on
  change and on SIGHUP;
- `identity.ClientCertificateRules` checks a route's allowed client identities;
- `extension.tls_extension` fills the ASGI TLS extension of a connection.

The submodules are imported by their own paths, because most of them need the
`server` extra (cryptography, structlog).
"""
