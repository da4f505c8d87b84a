from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from kratos_webhooks import HmacKey, Signer, Verifier, __version__
from kratos_webhooks.asymmetric import Ed25519PrivateKey, Ed25519PublicKey
from kratos_webhooks.cli import main

NOW = 1_700_000_000
BODY = b'{\n   "flow": { }\n}\n'
SECRET = HmacKey.generate().encode()


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    return CliRunner()


def signed_header_options(body: bytes = BODY, timestamp: int = NOW) -> list[str]:
    headers = Signer(HmacKey.parse(SECRET)).sign(
        body, msg_id="msg_1", timestamp=timestamp
    )
    options = []

    for name, value in headers.items():
        options += ["--header", f"{name}: {value}"]

    return options


def test_version(runner: CliRunner) -> None:
    result = runner.invoke(main, ["--version"])

    assert result.exit_code == 0
    assert __version__ in result.output


def test_sign_from_stdin(runner: CliRunner) -> None:
    result = runner.invoke(
        main,
        [
            "sign",
            "--secret-env",
            "HOOK_SECRET",
            "--id",
            "msg_1",
            "--timestamp",
            str(NOW),
        ],
        input=BODY,
    )
    lines = dict(line.split(": ", 1) for line in result.output.splitlines())
    verifier = Verifier(HmacKey.parse(SECRET), clock=lambda: NOW)

    assert result.exit_code == 0
    assert lines["webhook-id"] == "msg_1"
    assert lines["webhook-timestamp"] == str(NOW)
    assert verifier.is_valid(BODY, lines)


def test_sign_from_body_file_json(runner: CliRunner, tmp_path: Path) -> None:
    body_file = tmp_path / "body.json"
    body_file.write_bytes(BODY)
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")

    result = runner.invoke(
        main,
        [
            "sign",
            "--secret-file",
            str(secret_file),
            "--body-file",
            str(body_file),
            "--format",
            "json",
        ],
    )
    headers = json.loads(result.output)

    assert result.exit_code == 0
    assert headers["webhook-id"].startswith("msg_")
    assert Verifier(HmacKey.parse(SECRET)).is_valid(BODY, headers)


def test_sign_all_keys(runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLD_SECRET", HmacKey.generate().encode())

    result = runner.invoke(
        main,
        [
            "sign",
            "--secret-env",
            "HOOK_SECRET",
            "--secret-env",
            "OLD_SECRET",
            "--all-keys",
        ],
        input=BODY,
    )
    signature = dict(line.split(": ", 1) for line in result.output.splitlines())[
        "webhook-signature"
    ]

    assert result.exit_code == 0
    assert len(signature.split(" ")) == 2


def test_sign_ed25519(runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    private = Ed25519PrivateKey.generate()
    monkeypatch.setenv("ED_KEY", private.encode())

    result = runner.invoke(main, ["sign", "--secret-env", "ED_KEY"], input=BODY)
    headers = dict(line.split(": ", 1) for line in result.output.splitlines())

    assert result.exit_code == 0
    assert headers["webhook-signature"].startswith("v1a,")
    assert " " not in headers["webhook-signature"]
    assert Verifier(None, public_keys=[private.public_key()]).is_valid(BODY, headers)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sign"], "--secret-env or --secret-file"),
        (["sign", "--secret-env", "KW_UNSET_VARIABLE"], "is not set"),
        (["sign", "--secret-env", "BAD_SECRET"], "15 bytes"),
        (
            ["sign", "--secret-env", "HOOK_SECRET", "--body-file", "/nonexistent/b"],
            "cannot read",
        ),
        (["sign", "--secret-env", "HOOK_SECRET", "--timestamp", "-5"], "-5"),
        (["sign", "--secret-env", "HOOK_SECRET", "--id", "a.b"], "webhook-id"),
        (["sign", "--secret-env", "PUBLIC_ONLY"], "only public keys"),
        (["sign", "--secret", "whsec_abc"], "No such option"),
    ],
)
def test_sign_usage_errors(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    monkeypatch.setenv("BAD_SECRET", "whsec_" + "QUFBQUFBQUFBQUFBQUFB")
    monkeypatch.setenv(
        "PUBLIC_ONLY", Ed25519PrivateKey.generate().public_key().encode()
    )

    result = runner.invoke(main, args, input=BODY)

    assert result.exit_code == 2
    assert message in result.output


def test_sign_error_does_not_print_secret(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BAD_SECRET", "whsec_c2hvcnRzZWNyZXQ=")

    result = runner.invoke(main, ["sign", "--secret-env", "BAD_SECRET"], input=BODY)

    assert result.exit_code == 2
    assert "c2hvcnRzZWNyZXQ" not in result.output


def test_verify_ok(runner: CliRunner) -> None:
    result = runner.invoke(
        main,
        [
            "verify",
            "--secret-env",
            "HOOK_SECRET",
            "--now",
            str(NOW),
            *signed_header_options(),
        ],
        input=BODY,
    )

    assert result.exit_code == 0
    assert result.output == "ok\n"


def test_verify_headers_file(runner: CliRunner, tmp_path: Path) -> None:
    headers = Signer(HmacKey.parse(SECRET)).sign(BODY, msg_id="m", timestamp=NOW)
    headers_file = tmp_path / "headers.json"
    headers_file.write_text(json.dumps({k.title(): v for k, v in headers.items()}))
    body_file = tmp_path / "body"
    body_file.write_bytes(BODY)

    result = runner.invoke(
        main,
        [
            "verify",
            "--secret-env",
            "HOOK_SECRET",
            "--now",
            str(NOW),
            "--headers-file",
            str(headers_file),
            "--body-file",
            str(body_file),
        ],
    )

    assert result.exit_code == 0
    assert result.output == "ok\n"


def test_verify_public_key(runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    private = Ed25519PrivateKey.generate()
    public: Ed25519PublicKey = private.public_key()
    monkeypatch.setenv("ED_PUBLIC", public.encode())
    headers = Signer(None, private_keys=[private]).sign(BODY, msg_id="m", timestamp=NOW)
    options = [item for k, v in headers.items() for item in ("--header", f"{k}: {v}")]

    result = runner.invoke(
        main,
        ["verify", "--secret-env", "ED_PUBLIC", "--now", str(NOW), *options],
        input=BODY,
    )

    assert result.exit_code == 0


@pytest.mark.parametrize(
    ("body", "now", "code"),
    [
        (BODY + b" ", NOW, "signature_mismatch"),
        (BODY, NOW + 301, "timestamp_too_old"),
        (BODY, NOW - 301, "timestamp_in_future"),
    ],
)
def test_verify_rejected(runner: CliRunner, body: bytes, now: int, code: str) -> None:
    result = runner.invoke(
        main,
        [
            "verify",
            "--secret-env",
            "HOOK_SECRET",
            "--now",
            str(now),
            *signed_header_options(),
        ],
        input=body,
    )

    assert result.exit_code == 1
    assert result.output.startswith(code + ": ")


def test_verify_missing_header_rejected(runner: CliRunner) -> None:
    result = runner.invoke(
        main,
        ["verify", "--secret-env", "HOOK_SECRET", "--header", "webhook-id: m"],
        input=BODY,
    )

    assert result.exit_code == 1
    assert result.output.startswith("missing_header: ")


def test_verify_tolerance_option(runner: CliRunner) -> None:
    result = runner.invoke(
        main,
        [
            "verify",
            "--secret-env",
            "HOOK_SECRET",
            "--now",
            str(NOW + 10),
            "--tolerance",
            "5",
            *signed_header_options(),
        ],
        input=BODY,
    )

    assert result.exit_code == 1
    assert result.output.startswith("timestamp_too_old")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["verify", "--secret-env", "HOOK_SECRET"], "--header or --headers-file"),
        (
            ["verify", "--secret-env", "HOOK_SECRET", "--header", "no-colon"],
            "name: value",
        ),
        (
            [
                "verify",
                "--secret-env",
                "HOOK_SECRET",
                "--headers-file",
                "/nonexistent/h",
            ],
            "cannot read",
        ),
        (
            [
                "verify",
                "--secret-env",
                "HOOK_SECRET",
                "--now",
                "soon",
                "--header",
                "a: b",
            ],
            "soon",
        ),
        (["verify", "--header", "a: b"], "--secret-env or --secret-file"),
    ],
)
def test_verify_usage_errors(runner: CliRunner, args: list[str], message: str) -> None:
    result = runner.invoke(main, args, input=BODY)

    assert result.exit_code == 2
    assert message in result.output


def test_verify_headers_file_not_object(runner: CliRunner, tmp_path: Path) -> None:
    headers_file = tmp_path / "headers.json"
    headers_file.write_text('["webhook-id"]')

    result = runner.invoke(
        main,
        ["verify", "--secret-env", "HOOK_SECRET", "--headers-file", str(headers_file)],
        input=BODY,
    )

    assert result.exit_code == 2
    assert "JSON object" in result.output


def test_secret_new(runner: CliRunner) -> None:
    first = runner.invoke(main, ["secret", "new"])
    second = runner.invoke(main, ["secret", "new"])

    assert first.exit_code == 0
    assert first.output != second.output
    assert len(HmacKey.parse(first.output.strip()).key) == 32
    assert first.output.startswith("whsec_")


def test_secret_new_ed25519(runner: CliRunner) -> None:
    result = runner.invoke(main, ["secret", "new", "--ed25519"])
    lines = dict(line.split(": ", 1) for line in result.output.splitlines())
    private = Ed25519PrivateKey.parse(lines["secret key"])

    assert result.exit_code == 0
    assert private.public_key().encode() == lines["public key"]


def test_secret_new_usage_error(runner: CliRunner) -> None:
    result = runner.invoke(main, ["secret", "new", "--bytes", "8"])

    assert result.exit_code == 2


def test_sign_output_verifies_from_file(runner: CliRunner, tmp_path: Path) -> None:
    body_file = tmp_path / "body.json"
    body_file.write_bytes(BODY)
    signed = runner.invoke(
        main,
        [
            *("sign", "--secret-env", "HOOK_SECRET", "--id", "msg_1"),
            *("--timestamp", str(NOW), "--body-file", str(body_file)),
        ],
    )

    assert signed.exit_code == 0, signed.output

    headers_file = tmp_path / "headers.txt"
    headers_file.write_text(signed.output)
    common = ["verify", "--secret-env", "HOOK_SECRET", "--body-file", str(body_file)]
    verified = runner.invoke(
        main, [*common, "--headers-file", str(headers_file), "--now", str(NOW)]
    )
    late = runner.invoke(
        main, [*common, "--headers-file", str(headers_file), "--now", str(NOW + 301)]
    )

    assert verified.exit_code == 0, verified.output
    assert verified.output == "ok\n"
    assert late.exit_code == 1
    assert late.output.startswith("timestamp_too_old")


@pytest.mark.parametrize("output_format", ["headers", "json"])
def test_sign_output_verifies_from_stdin(
    runner: CliRunner, tmp_path: Path, output_format: str
) -> None:
    body_file = tmp_path / "body.json"
    body_file.write_bytes(BODY)
    signed = runner.invoke(
        main,
        [
            *("sign", "--secret-env", "HOOK_SECRET", "--format", output_format),
            *("--timestamp", str(NOW), "--body-file", str(body_file)),
        ],
    )
    verified = runner.invoke(
        main,
        [
            *("verify", "--secret-env", "HOOK_SECRET", "--headers-file", "-"),
            *("--body-file", str(body_file), "--now", str(NOW)),
        ],
        input=signed.output,
    )
    tampered = runner.invoke(
        main,
        [
            *("verify", "--secret-env", "HOOK_SECRET", "--headers-file", "-"),
            *("--body-file", str(body_file), "--now", str(NOW)),
        ],
        input=signed.output.replace("msg_", "msg_x"),
    )

    assert verified.exit_code == 0, verified.output
    assert verified.output == "ok\n"
    assert tampered.exit_code == 1
    assert tampered.output.startswith("signature_mismatch")


def test_verify_stdin_headers_need_body_file(runner: CliRunner) -> None:
    result = runner.invoke(
        main,
        ["verify", "--secret-env", "HOOK_SECRET", "--headers-file", "-"],
        input="webhook-id: msg_1\n",
    )

    assert result.exit_code == 2
    assert "give the body with --body-file" in result.output


def test_verify_headers_file_bad_line(runner: CliRunner, tmp_path: Path) -> None:
    headers_file = tmp_path / "headers.txt"
    headers_file.write_text("webhook-id: msg_1\nno colon here\n")
    result = runner.invoke(
        main,
        ["verify", "--secret-env", "HOOK_SECRET", "--headers-file", str(headers_file)],
        input=BODY,
    )

    assert result.exit_code == 2
    assert "expected 'name: value', got 'no colon here'" in result.output
