"""Bearer tokens for machines: stored hashed (SHA-256), looked up by hash."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from opscenter.store import AsyncStore


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    role: str
    scope: str


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return "oc_" + secrets.token_urlsafe(32)


class TokenStore:
    """Token → principal, backed by ClickHouse ``api_tokens`` with a short in-process cache."""

    def __init__(self, store: AsyncStore, cache_s: float = 10.0) -> None:
        self.store = store
        self.cache_s = cache_s
        self._cache: dict[str, tuple[float, Principal | None]] = {}

    async def revoke(self, token_sha256: str) -> bool:
        """Revoke a token by its digest; False if there is no such token."""
        rows = await self.store.query(
            "SELECT name, role, scope FROM api_tokens FINAL WHERE token_sha256 = {h:String}",
            parameters={"h": token_sha256},
        )
        if not rows:
            return False
        name, role, scope = rows[0]
        await self.store.insert_columns(
            "api_tokens",
            [[token_sha256], [name], [role], [scope], [1], [time.time_ns()]],
            ["token_sha256", "name", "role", "scope", "revoked", "version"],
        )
        self._cache.pop(token_sha256, None)
        return True

    async def list(self) -> list[dict]:
        return await self.store.query_dicts(
            "SELECT token_sha256, name, role, scope, created, revoked FROM api_tokens FINAL ORDER BY created"
        )

    async def add(self, token: str, name: str, role: str, scope: str) -> None:
        await self.store.insert_columns(
            "api_tokens",
            [[digest(token)], [name], [role], [scope], [0], [time.time_ns()]],
            ["token_sha256", "name", "role", "scope", "revoked", "version"],
        )
        self._cache.pop(digest(token), None)

    async def lookup(self, token: str) -> Principal | None:
        return await self.lookup_digest(digest(token))

    async def lookup_digest(self, h: str) -> Principal | None:
        """The principal of a token given its SHA-256 digest (kiosk cookies carry only the digest)."""
        hit = self._cache.get(h)
        if hit and time.monotonic() - hit[0] < self.cache_s:
            return hit[1]
        rows = await self.store.query(
            "SELECT name, role, scope, revoked FROM api_tokens FINAL WHERE token_sha256 = {h:String}",
            parameters={"h": h},
        )
        principal = Principal(rows[0][0], rows[0][1], rows[0][2]) if rows and not rows[0][3] else None
        self._cache[h] = (time.monotonic(), principal)
        return principal
