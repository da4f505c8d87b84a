"""Configuration checks of the TLS settings and the routes' client rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kratos_webhooks.config import parse_config
from kratos_webhooks.errors import ConfigError

from .pki import Pki


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHECKS_KEY", "checks-api-key")


def _document(pki: Pki, tmp_path: Path, rules: Any, **tls: Any) -> dict[str, Any]:
    return {
        "server": {
            "tls": {
                "cert_file": str(pki.cert_file),
                "key_file": str(pki.key_file),
                **tls,
            }
        },
        "storage": f"sqlite://{tmp_path / 'state.db'}",
        "routes": [
            {
                "path": "/hooks/a",
                "mode": "sync",
                "upstream": "http://127.0.0.1:8000/a",
                "verify": {
                    "scheme": "kratos-api-key",
                    "secrets": ["env:CHECKS_KEY"],
                    "name": "X-Key",
                },
                "client_certificates": rules,
            }
        ],
    }


def _problems(document: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as caught:
        parse_config(document)

    return caught.value.problems


def test_rules_accepted(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    document = _document(
        pki,
        tmp_path,
        {"subjects": ["relay"], "sans": ["dns:relay"], "fingerprints": ["ab" * 32]},
        client_auth="required",
        client_ca_file=str(pki.client_ca_file),
    )

    route = parse_config(document).routes[0]

    assert route.client_certificates is not None
    assert route.client_certificates.subjects == ("relay",)


def test_rules_need_client_auth(tmp_path: Path) -> None:
    pki = Pki(tmp_path)

    problems = _problems(_document(pki, tmp_path, {"subjects": ["relay"]}))

    assert problems == [
        (
            "routes[0].client_certificates",
            "needs server.tls.client_auth set to optional or required",
        )
    ]


def test_malformed_rules_listed(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    document = _document(
        pki,
        tmp_path,
        {"sans": ["relay", "dns:ok"], "fingerprints": ["abc"]},
        client_auth="optional",
        client_ca_file=str(pki.client_ca_file),
    )

    keys = [key for key, _ in _problems(document)]

    assert keys == [
        "routes[0].client_certificates.sans[0]",
        "routes[0].client_certificates.fingerprints[0]",
    ]


def test_empty_rules_refused(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    document = _document(
        pki,
        tmp_path,
        {},
        client_auth="required",
        client_ca_file=str(pki.client_ca_file),
    )

    assert _problems(document) == [
        (
            "routes[0].client_certificates",
            "list at least one subject, SAN or fingerprint",
        )
    ]


def test_unset_key_password_refused(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    document = _document(pki, tmp_path, None, key_password="env:CHECKS_NOT_SET")

    assert [key for key, _ in _problems(document)] == ["server.tls.key_password"]
