"""A token issuer for tests: an EC P-256 key made in the test, its JWKS written to a file, tokens minted with
PyJWT, and the server settings that trust it. Also a stranger: a key of the same `kid` the JWKS does not hold,
whose tokens carry a signature that does not verify."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

ISSUER = "https://issuer.microstate.test"
AUDIENCE = "microstate"
KID = "test-key-1"


class Issuer:
    def __init__(self, directory: Path, *, kid: str = KID) -> None:
        self.kid = kid
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._stranger = ec.generate_private_key(ec.SECP256R1())
        self.jwks_path = directory / f"jwks-{kid}.json"
        self.jwks_path.write_text(json.dumps({"keys": [self.jwk()]}))

    def jwk(self) -> dict[str, Any]:
        """The public key tokens are signed with, as a JWK."""
        jwk = json.loads(ECAlgorithm.to_jwk(self._key.public_key()))
        return {**jwk, "kid": self.kid, "use": "sig", "alg": "ES256"}

    def settings(self) -> dict[str, str]:
        """The server settings (ServerConfig fields) that verify this issuer's tokens."""
        return {"auth_jwks": str(self.jwks_path), "auth_issuer": ISSUER, "auth_audience": AUDIENCE}

    def flags(self) -> list[str]:
        return [f"--{name.replace('_', '-')}={value}" for name, value in self.settings().items()]

    def token(
        self,
        *scopes: str,
        subject: str = "worker-1",
        issuer: str = ISSUER,
        audience: str = AUDIENCE,
        expires_in: float = 600.0,
        forged: bool = False,
    ) -> str:
        """A token for `scopes`; change one claim to make it wrong, or `forged` to sign it with a key the
        JWKS does not hold (under the same kid)."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "sub": subject,
            "iss": issuer,
            "aud": audience,
            "iat": now,
            "exp": now + int(expires_in),
            "scope": " ".join(scopes),
        }
        key = self._stranger if forged else self._key
        return jwt.encode(claims, key, algorithm="ES256", headers={"kid": self.kid})
