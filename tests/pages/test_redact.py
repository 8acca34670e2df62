"""Secret redaction: every pattern, no false positives on ordinary log lines, idempotent."""

from __future__ import annotations

import pytest

from pages.redact import REDACTED, cap, redact

PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAx1y\nabcDEF==\n-----END RSA PRIVATE KEY-----"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"

CASES = [
    ("Authorization: Bearer abc123def456ghi", "Authorization: Bearer [REDACTED]", "abc123def456ghi"),
    ("authorization: Basic dXNlcjpwYXNz", "authorization: Basic [REDACTED]", "dXNlcjpwYXNz"),
    ("curl -H 'x' Bearer s3cr3tT0kenValue1", "curl -H 'x' Bearer [REDACTED]", "s3cr3tT0kenValue1"),
    ("login password=hunter2 user=bob", "login password=[REDACTED] user=bob", "hunter2"),
    ("db_passwd=abc ok", "db_passwd=[REDACTED] ok", "abc"),
    ("GET /cb?access_token=zzz&x=1", "GET /cb?access_token=[REDACTED]&x=1", "zzz"),
    ("client_secret = 'a b c'", "client_secret = [REDACTED]", "a b c"),
    ("X-Api-Key: k-123456", "X-Api-Key: [REDACTED]", "k-123456"),
    ('{"user": "bob", "password": "p@ss\\"w"}', '{"user": "bob", "password": "[REDACTED]"}', "p@ss"),
    ("{'secret': 'xyz'}", "{'secret': '[REDACTED]'}", "xyz"),
    ("key AKIAIOSFODNN7EXAMPLE used", "key [REDACTED] used", "AKIAIOSFODNN7EXAMPLE"),
    (f"before\n{PEM}\nafter", "before\n[REDACTED]\nafter", "MIIEowIBAAKCAQEAx1y"),
    ("-----BEGIN PRIVATE KEY-----\nMIIcut", "[REDACTED]", "MIIcut"),
    (f"jwt {JWT} end", "jwt [REDACTED] end", "eyJzdWIi"),
    ("dial postgres://app:pa55w0rd@db:5432/x", "dial postgres://app:[REDACTED]@db:5432/x", "pa55w0rd"),
    ("gh ghp_" + "a1B2" * 9, "gh [REDACTED]", "a1B2a1B2"),
    ("gl glpat-abcdefghij0123456789", "gl [REDACTED]", "glpat-abc"),
    ("slack xoxb-1234567890-abcdefghij", "slack [REDACTED]", "xoxb-"),
    ("Cookie: session=abc; theme=dark", "Cookie: [REDACTED]", "session=abc"),
]


@pytest.mark.parametrize(("text", "expected", "secret"), CASES)
def test_each_pattern(text: str, expected: str, secret: str) -> None:
    out = redact(text)
    assert out == expected
    assert secret not in out
    assert redact(out) == out  # idempotent


@pytest.mark.parametrize(
    "line",
    [
        "GET /api/tokens 200 12ms",
        'level=info msg="token refreshed" user=bob',
        "password reset requested for user 42",
        "Bearer authentication failed",
        "connecting to http://db:5432/app",
        "commit 3f2a9c1e deployed by ci",
        "contact ops@example.com",
        "ERROR upstream timeout after 30s host=10.0.0.3",
    ],
)
def test_ordinary_lines_unchanged(line: str) -> None:
    assert redact(line) == line


def test_emails_only_when_asked() -> None:
    text = "mail from alice.b+x@mail.example.co.uk failed"
    assert redact(text) == text
    assert redact(text, emails=True) == "mail from [REDACTED] failed"
    assert redact(redact(text, emails=True), emails=True) == "mail from [REDACTED] failed"


def test_url_credentials_and_email_together() -> None:
    out = redact("https://u:p4ss@host.example.com/x by bob@example.com", emails=True)
    assert out == f"https://u:{REDACTED}@host.example.com/x by {REDACTED}"


def test_cap() -> None:
    assert cap("short", 10) == "short"
    text = "x" * 1000
    out = cap(text, 100)
    assert len(out) <= 100
    assert out.startswith("xxx")
    assert out.endswith("characters truncated]")
    kept = out.index("…")
    assert f"[{1000 - kept} more" in out
    assert cap(text, 5) == "xxxxx"
    with pytest.raises(ValueError):
        cap(text, -1)


def test_secret_pair_inside_an_ordinary_value() -> None:
    assert redact('msg="login password=x1 ok" user=bob') == 'msg="login password=[REDACTED] ok" user=bob'
    assert redact("next=https://app/cb?token=abc&x=1") == "next=https://app/cb?token=[REDACTED]&x=1"
    assert redact('{"a": "b", "api_key": "c"}') == '{"a": "b", "api_key": "[REDACTED]"}'


def test_long_lines_stay_fast() -> None:
    import time

    started = time.monotonic()
    for text in ("token" * 4000, "a." * 10000, "x=" * 10000, '"' + "k" * 20000 + '"'):
        redact(text, emails=True)
    assert time.monotonic() - started < 1.0


def test_unterminated_values_are_still_redacted() -> None:
    assert redact('{"password": "abc') == '{"password": "[REDACTED]"'
    assert redact('password="abc def\nnext') == "password=[REDACTED]\nnext"


def test_kubeconfig_keys_and_selfheal_tokens_are_redacted() -> None:
    kubeconfig = (
        "users:\n- name: admin\n  user:\n"
        "    client-certificate-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t\n"
        "    client-key-data: LS0tLS1CRUdJTiBSU0EgUFJJVkFURSBLRVktLS0tLQ==\n"
    )
    out = redact(kubeconfig)
    assert "LS0tLS1CRUdJTiBSU0Eg" not in out and "client-key-data: [REDACTED]" in out
    assert redact("token file: shw_Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5") == f"token file: {REDACTED}"
    assert redact("shu_abcdefghijklmnopqrstuvwxyz") == REDACTED


def test_known_secret_values_are_redacted_wherever_printed() -> None:
    """A bare token file (`cat data/webhook-token`) matches no pattern: the caller's own secret
    values are replaced verbatim, longest first, and short values are left alone."""
    printed = "8f3kQz1pL0vX9mN2\nwhatever 8f3kQz1pL0vX9mN2-extra short"
    out = redact(printed, known=["8f3kQz1pL0vX9mN2", "8f3kQz1pL0vX9mN2-extra", "short"])
    assert out == f"{REDACTED}\nwhatever {REDACTED} short"
