from __future__ import annotations

import subprocess
import sys

import kratos_webhooks

EXPECTED = {
    "DEFAULT_TOLERANCE",
    "ApiKeyCheck",
    "BasicAuthCheck",
    "ClientCertificateRejected",
    "ConfigError",
    "CredentialError",
    "CredentialMismatch",
    "Delivery",
    "ForbiddenSource",
    "HmacKey",
    "InvalidJson",
    "InvalidPayload",
    "InvalidTimestamp",
    "InvalidUpstreamAnswer",
    "InvalidWebhookId",
    "JsonnetMacCheck",
    "KeySet",
    "MalformedCredential",
    "MalformedHeader",
    "MalformedSignatureHeader",
    "MalformedTimestamp",
    "MethodNotAllowed",
    "MissingCredential",
    "MissingHeader",
    "NoSupportedSignature",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "Secret",
    "SignatureMismatch",
    "Signer",
    "TimestampInFuture",
    "TimestampTooOld",
    "UnsupportedEncoding",
    "UnsupportedMediaType",
    "UpstreamError",
    "UpstreamTimeout",
    "UpstreamUnavailable",
    "VerificationError",
    "Verifier",
    "WebhookError",
    "__version__",
    "jsonnet_mac",
    "new_message_id",
}

REASON_CODES = {
    "not_found",
    "method_not_allowed",
    "forbidden_source",
    "client_certificate_rejected",
    "rate_limited",
    "payload_too_large",
    "unsupported_encoding",
    "unsupported_media_type",
    "missing_header",
    "malformed_header",
    "timestamp_too_old",
    "timestamp_in_future",
    "signature_mismatch",
    "credential_mismatch",
    "invalid_json",
    "invalid_payload",
    "upstream_timeout",
    "upstream_unavailable",
    "invalid_upstream_answer",
}


def test_all_is_pinned() -> None:
    assert set(kratos_webhooks.__all__) == EXPECTED


def test_all_names_exist() -> None:
    for name in kratos_webhooks.__all__:
        assert hasattr(kratos_webhooks, name), name


def test_every_error_is_one_tree() -> None:
    errors = [
        getattr(kratos_webhooks, name)
        for name in kratos_webhooks.__all__
        if isinstance(getattr(kratos_webhooks, name), type)
        and issubclass(getattr(kratos_webhooks, name), Exception)
    ]

    for error in errors:
        if error is kratos_webhooks.ConfigError:
            assert not issubclass(error, kratos_webhooks.WebhookError)
        else:
            assert issubclass(error, kratos_webhooks.WebhookError), error


def test_reason_codes_are_the_documented_set() -> None:
    codes = {
        getattr(kratos_webhooks, name).code
        for name in kratos_webhooks.__all__
        if isinstance(getattr(kratos_webhooks, name), type)
        and issubclass(getattr(kratos_webhooks, name), kratos_webhooks.WebhookError)
        and getattr(kratos_webhooks, name) is not kratos_webhooks.WebhookError
    }

    assert codes == REASON_CODES


def test_core_imports_only_the_standard_library() -> None:
    code = (
        "import sys; before = set(sys.modules); import kratos_webhooks; "
        "new = {m.split('.')[0] for m in set(sys.modules) - before}; "
        "print(' '.join(sorted(new)))"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    third_party = set(output) - set(sys.stdlib_module_names) - {"kratos_webhooks"}

    assert third_party == set()
