"""What we sign verifies with the reference library, and the other way round."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
import standardwebhooks
import svix.webhooks

from kratos_webhooks import HmacKey, Signer, Verifier

SECRET = HmacKey.generate().encode()


@pytest.fixture(scope="module")
def samples(kratos_samples: dict[str, bytes]) -> list[bytes]:
    return list(kratos_samples.values())


def test_ours_verifies_with_standardwebhooks(samples: list[bytes]) -> None:
    reference = standardwebhooks.Webhook(SECRET)

    for body in samples:
        headers = Signer(HmacKey.parse(SECRET)).sign(body)

        reference.verify(body, headers)


def test_standardwebhooks_verifies_with_ours(samples: list[bytes]) -> None:
    reference = standardwebhooks.Webhook(SECRET)
    verifier = Verifier(HmacKey.parse(SECRET))

    for index, body in enumerate(samples):
        now = datetime.now(tz=UTC)
        headers = {
            "webhook-id": f"msg_{index}",
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": reference.sign(f"msg_{index}", now, body),
        }

        assert verifier.verify(body, headers).msg_id == f"msg_{index}"


def test_ours_verifies_with_svix(samples: list[bytes]) -> None:
    reference = svix.webhooks.Webhook(SECRET)

    for body in samples:
        headers = Signer(HmacKey.parse(SECRET)).sign(body)
        svix_headers = {
            "svix-id": headers["webhook-id"],
            "svix-timestamp": headers["webhook-timestamp"],
            "svix-signature": headers["webhook-signature"],
        }

        reference.verify(body, svix_headers)


def test_reference_rejects_our_tampered_body(samples: list[bytes]) -> None:
    reference = standardwebhooks.Webhook(SECRET)
    body = samples[0]
    headers = Signer(HmacKey.parse(SECRET)).sign(body, timestamp=int(time.time()))

    with pytest.raises(standardwebhooks.WebhookVerificationError):
        reference.verify(body[:-1] + b" ", headers)
