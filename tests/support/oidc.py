"""A stand-in OpenID Connect provider: its JWKS on a real HTTP socket, and tokens it signs.

The key pair is generated per provider (RSA 2048), so a token signed by another provider has a
key id this JWKS does not list, exactly as a foreign issuer's token would.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

ISSUER = "https://idp.example.test/realms/ops"
AUDIENCE = "selfheal"


class OidcProvider:
    """Serves `/jwks.json` (the public key) and signs tokens with the private key."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = uuid.uuid4().hex[:16]
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        self.jwks = {"keys": [{**jwk, "kid": self.kid, "use": "sig", "alg": "RS256"}]}
        self.fetches = 0
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != "/jwks.json":
                    self.send_error(404)
                    return
                provider.fetches += 1
                body = json.dumps(provider.jwks).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def jwks_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"

    def settings(self, **extra: Any) -> dict[str, Any]:
        """The `auth.oidc` section pointing at this provider."""
        return {"issuer": ISSUER, "audience": AUDIENCE, "jwks_url": self.jwks_url, **extra}

    def token(self, sub: str, *, ttl: float = 300, **claims: Any) -> str:
        """A token as the provider issues it for `sub` (`preferred_username`), overridable claim by claim."""
        now = int(time.time())
        body = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": uuid.uuid4().hex,
            "preferred_username": sub,
            "iat": now,
            "exp": now + int(ttl),
            **claims,
        }
        return jwt.encode(body, self.key, algorithm="RS256", headers={"kid": self.kid})

    def __enter__(self) -> OidcProvider:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()
