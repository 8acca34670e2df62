"""Who the API lets in, through its HTTP interface: OIDC bearer tokens checked against a real JWKS,
roles from `auth.users` and from the token's groups, and the errors a caller sees."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest
import structlog

from devstack.temporal_server import free_port
from tests.support.app import ApiServer, make_settings
from tests.support.oidc import AUDIENCE, ISSUER, OidcProvider

MISSING = "0123456789ab-abcdef"  # a well-formed incident id no workflow has: 404 once past auth


@pytest.fixture
def idp() -> Iterator[OidcProvider]:
    with OidcProvider() as provider:
        yield provider


@pytest.fixture
def api(temporal_address: str, tmp_path: Path, idp: OidcProvider) -> Iterator[ApiServer]:
    settings = make_settings(
        temporal_address,
        tmp_path / "data",
        auth={
            "oidc": idp.settings(role_map={"sre": ["approver"], "staff": ["viewer"]}),
            "users": {"olga": {"roles": ["approver"]}},
        },
    )
    with ApiServer(settings) as server:
        yield server


def _get(api: ApiServer, token: str, path: str = "/api/v1/remediation") -> httpx.Response:
    return httpx.get(f"{api.url}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=30)


def _decide(api: ApiServer, token: str, **body: str) -> httpx.Response:
    return httpx.post(
        f"{api.url}/api/v1/incidents/{MISSING}/decision",
        json={"decision": "approve", **body},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


def test_oidc_group_mapped_to_approver_decides_as_itself(api: ApiServer, idp: OidcProvider) -> None:
    token = idp.token("sam", groups=["sre", "unrelated"])
    assert _get(api, token).status_code == 200
    with structlog.testing.capture_logs() as logs:
        resp = _decide(api, token)
    assert resp.status_code == 404, "past authentication and the role check, to the incident lookup"
    (audit,) = [e for e in logs if e["event"] == "audit"]
    assert (audit["who"], audit["via"], audit["outcome"]) == ("sam", "oidc", "not_accepted")
    refused = _decide(api, token, by="olga")
    assert refused.status_code == 403 and "cannot act as 'olga'" in refused.json()["error"]


def test_oidc_user_known_in_auth_users_takes_its_roles(api: ApiServer, idp: OidcProvider) -> None:
    assert _decide(api, idp.token("olga")).status_code == 404


def test_oidc_viewer_reads_but_cannot_decide(api: ApiServer, idp: OidcProvider) -> None:
    token = idp.token("vic", groups=["staff"])
    assert _get(api, token).status_code == 200
    resp = _decide(api, token)
    assert resp.status_code == 403 and resp.json()["error"].startswith("user 'vic' is not an approver")


def test_oidc_user_with_no_role_is_refused_even_reads(api: ApiServer, idp: OidcProvider) -> None:
    resp = _get(api, idp.token("nobody", groups=["guests"]))
    assert resp.status_code == 403 and resp.json()["error"] == "user 'nobody' is not a viewer"


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({"ttl": -120}, "expired"),
        ({"aud": "another-app"}, "audience"),
        ({"iss": "https://evil.example/"}, "issuer"),
        ({"preferred_username": None}, "preferred_username"),
        ({"preferred_username": "Sam <sam@example.com>\nApproved"}, "not a user name"),
    ],
)
def test_bad_oidc_tokens_get_401(
    api: ApiServer, idp: OidcProvider, claims: dict[str, object], message: str
) -> None:
    ttl = claims.pop("ttl", 300)
    token = idp.token("sam", ttl=float(ttl), groups=["sre"], **claims)  # type: ignore[arg-type]
    resp = _decide(api, token)
    assert resp.status_code == 401, resp.text
    assert message in resp.json()["error"].lower()
    assert resp.headers["www-authenticate"] == 'Bearer realm="selfheal"'


def test_expiry_within_the_leeway_is_accepted(api: ApiServer, idp: OidcProvider) -> None:
    assert _get(api, idp.token("sam", ttl=-5, groups=["sre"])).status_code == 200


def test_tokens_not_signed_by_the_issuers_key_get_401(api: ApiServer, idp: OidcProvider) -> None:
    with OidcProvider() as other:
        foreign = other.token("sam", groups=["sre"])
    assert _decide(api, foreign).status_code == 401
    forged = jwt.encode(
        {"iss": ISSUER, "aud": AUDIENCE, "preferred_username": "sam", "groups": ["sre"], "exp": 4102444800},
        "a-guessed-shared-secret-of-32-bytes!",
        algorithm="HS256",
        headers={"kid": idp.kid},
    )
    assert _decide(api, forged).status_code == 401
    unsigned = jwt.encode(
        {"iss": ISSUER, "aud": AUDIENCE, "preferred_username": "sam", "exp": 4102444800},
        None,
        algorithm="none",
        headers={"kid": idp.kid},
    )
    assert _decide(api, unsigned).status_code == 401


def test_unreachable_jwks_is_503(temporal_address: str, tmp_path: Path, idp: OidcProvider) -> None:
    down = {
        **idp.settings(role_map={"sre": ["approver"]}),
        "jwks_url": f"http://127.0.0.1:{free_port()}/jwks",
    }
    settings = make_settings(temporal_address, tmp_path / "data", auth={"oidc": down})
    with ApiServer(settings) as api:
        resp = _get(api, idp.token("sam", groups=["sre"]))
    assert resp.status_code == 503 and "auth.oidc.jwks_url" in resp.json()["error"]
