"""People who log in: ClickHouse ``users`` seeded from a data file, maintained by the admin API."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import yaml

from opscenter.auth import hash_password, validate_user
from opscenter.store import AsyncStore

DEMO_USERS = Path(__file__).parent / "data" / "users.yaml"
COLUMNS = ["username", "display_name", "password_hash", "role", "scope", "disabled", "version"]


class UsersFileError(ValueError):
    """The users data file is invalid; the message names the file, the entry and the field."""


def load_users_file(path: Path) -> list[dict[str, Any]]:
    """Validated entries of a users file (username, display_name, role, scope, password_argon2)."""
    doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    out = []
    for i, entry in enumerate(doc.get("users") or []):
        where = f"{path}: users[{i}]"
        for field in ("username", "role", "password_argon2"):
            if not entry.get(field):
                raise UsersFileError(f"{where}: field {field!r} is missing")
        if not str(entry["password_argon2"]).startswith("$argon2"):
            raise UsersFileError(f"{where} ({entry['username']}): password_argon2 is not an argon2 hash")
        try:
            validate_user(entry["role"], entry.get("scope") or "")
        except ValueError as exc:
            raise UsersFileError(f"{where} ({entry['username']}): {exc}") from None
        out.append(entry)
    return out


class UserStore:
    def __init__(self, store: AsyncStore) -> None:
        self.store = store

    async def get(self, username: str) -> dict[str, Any] | None:
        rows = await self.store.query_dicts(
            "SELECT username, display_name, password_hash, role, scope, disabled FROM users FINAL "
            "WHERE username = {u:String}",
            {"u": username},
        )
        return rows[0] if rows else None

    async def list(self) -> list[dict[str, Any]]:
        return await self.store.query_dicts(
            "SELECT username, display_name, role, scope, disabled, updated FROM users FINAL ORDER BY username"
        )

    async def put(self, username: str, display_name: str, role: str, scope: str, *,
                  password: str | None = None, password_hash: str | None = None, disabled: bool = False) -> None:  # fmt: skip
        validate_user(role, scope)
        if password_hash is None:
            if password is None:
                current = await self.get(username)
                if current is None:
                    raise ValueError("a new user needs a password")
                password_hash = current["password_hash"]
            else:
                if len(password) < 8:
                    raise ValueError("password must have at least 8 characters")
                password_hash = hash_password(password)
        await self.store.insert_columns(
            "users",
            [[username], [display_name], [password_hash], [role], [scope], [int(disabled)], [time.time_ns()]],
            COLUMNS,
        )

    async def seed(self, path: Path) -> int:
        """Load a users file into an empty table; return how many users were added."""
        if (await self.store.query("SELECT count() FROM users"))[0][0]:
            return 0
        entries = load_users_file(path)
        for e in entries:
            await self.put(e["username"], e.get("display_name") or e["username"], e["role"], e.get("scope") or "",
                           password_hash=e["password_argon2"])  # fmt: skip
        return len(entries)
