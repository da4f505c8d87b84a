from __future__ import annotations

import base64
from pathlib import Path

import pytest

from kratos_webhooks import ConfigError, HmacKey, KeySet, Secret

KEY_32 = base64.b64encode(bytes(range(32))).decode()


def test_secret_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_SECRET", "s3cret-value")

    secret = Secret.load("env:HOOK_SECRET")

    assert secret.reveal() == "s3cret-value"
    assert secret.reference == "env:HOOK_SECRET"


def test_secret_from_file_strips_one_newline(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_bytes(b"value \n\n")

    secret = Secret.load(f"file:{path}")

    assert secret.reveal() == "value \n"


def test_secret_from_file_keeps_other_whitespace(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_bytes(b"  value\t")

    assert Secret.load(f"file:{path}").reveal() == "  value\t"


def test_secret_literal() -> None:
    assert Secret.load("literal:abc").reveal() == "abc"


def test_secret_repr_hides_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_SECRET", "do-not-show-me")
    secret = Secret.load("env:HOOK_SECRET")
    literal = Secret.load("literal:do-not-show-me")

    for shown in (repr(secret), str(secret), repr(literal), f"{literal}"):
        assert "do-not-show-me" not in shown

    assert "env:HOOK_SECRET" in repr(secret)


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("HOOK_SECRET", "invalid secret reference"),
        ("vault:x", "invalid secret reference"),
        ("env:", "needs a variable name"),
        ("env:KW_TEST_UNSET_VARIABLE", "is not set"),
        ("file:", "needs a path"),
        ("file:/nonexistent/kw-secret", "cannot be read"),
        ("literal:", "empty"),
    ],
)
def test_secret_load_errors(reference: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        Secret.load(reference)


def test_secret_empty_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_SECRET", "")

    with pytest.raises(ConfigError, match="is empty"):
        Secret.load("env:HOOK_SECRET")


def test_secret_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_bytes(b"\n")

    with pytest.raises(ConfigError, match="is empty"):
        Secret.load(f"file:{path}")


def test_secret_literal_refused_when_disallowed() -> None:
    with pytest.raises(ConfigError, match="not allowed"):
        Secret.load("literal:abc", allow_literal=False)


def test_secret_reference_must_be_str() -> None:
    with pytest.raises(TypeError):
        Secret.load(b"env:X")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "text",
    [
        "whsec_" + KEY_32,
        KEY_32,
        "whsec_" + KEY_32.rstrip("="),
        KEY_32.rstrip("="),
    ],
)
def test_hmac_key_forms(text: str) -> None:
    assert HmacKey.parse(text).key == bytes(range(32))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "is empty"),
        ("whsec_", "is empty after"),
        ("whsec_abc$def", "outside standard base64"),
        ("whsec_" + KEY_32.replace("A", "-", 1), "outside standard base64"),
        ("whsec_ " + KEY_32, "outside standard base64"),
        ("whsec_" + base64.b64encode(b"x" * 15).decode(), "15 bytes"),
        ("v1," + KEY_32, "signature"),
        ("whsec_abcde", "impossible"),
    ],
)
def test_hmac_key_refused(text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        HmacKey.parse(text)


def test_hmac_key_sixteen_bytes_accepted() -> None:
    text = base64.b64encode(b"k" * 16).decode()

    assert len(HmacKey.parse(text).key) == 16


def test_hmac_key_error_names_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_SECRET", "whsec_c2hvcnQ=")

    with pytest.raises(ConfigError, match="env:HOOK_SECRET") as caught:
        HmacKey.from_secret(Secret.load("env:HOOK_SECRET"))

    assert "c2hvcnQ" not in str(caught.value)


def test_hmac_key_round_trip() -> None:
    key = HmacKey.generate()

    assert HmacKey.parse(key.encode()).key == key.key
    assert key.encode().startswith("whsec_")
    assert len(key.key) == 32


def test_hmac_key_repr_hides_key() -> None:
    key = HmacKey.parse("whsec_" + KEY_32)

    assert KEY_32 not in repr(key)
    assert KEY_32 not in repr(KeySet((key,)))


def test_key_set_newest_first() -> None:
    first, second = HmacKey.generate(), HmacKey.generate()
    keys = KeySet.of(first, second.encode())

    assert keys.newest == first
    assert len(keys) == 2
    assert list(keys)[1].key == second.key


def test_key_set_empty_refused() -> None:
    with pytest.raises(ConfigError):
        KeySet(())


def test_key_set_load_refuses_single_str() -> None:
    with pytest.raises(TypeError):
        KeySet.load("env:X")


def test_key_set_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CURRENT", "whsec_" + KEY_32)
    monkeypatch.setenv("PREVIOUS", HmacKey.generate().encode())

    keys = KeySet.load(["env:CURRENT", "env:PREVIOUS"])

    assert keys.newest.key == bytes(range(32))
    assert keys.newest.label == "env:CURRENT"
