"""Roles, principals and scope rules (§5–§10): who may see and do what; pure, no I/O."""

from __future__ import annotations

from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

#: every role of REQUIREMENTS.md, plus ``kiosk`` (a wall-screen device: read-only screens)
ROLES = ("bureau", "finance", "provider", "unit", "district", "auditor", "kiosk")
#: roles whose scope names one organisation; the others see the whole city
SCOPED_ROLES = {"provider": "provider_id", "unit": "unit_id", "district": "district_id"}

_hasher = PasswordHasher()


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: a user, a machine token or a kiosk."""

    name: str
    role: str
    scope: str = ""  # provider, unit or district id for scoped roles
    kind: str = "user"  # user | token | kiosk

    @property
    def scope_field(self) -> str | None:
        """The resource attribute a scoped role is limited by (None: sees all)."""
        return SCOPED_ROLES.get(self.role)

    def sees(self, provider_id: str = "", unit_id: str = "", district_id: str = "") -> bool:
        """Whether a row belonging to these organisations is inside the caller's scope."""
        field = self.scope_field
        if field is None:
            return True
        value = {"provider_id": provider_id, "unit_id": unit_id, "district_id": district_id}[field]
        return bool(self.scope) and value == self.scope


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def validate_user(role: str, scope: str) -> None:
    """Raise ValueError if a role/scope pair is not allowed."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
    if role in SCOPED_ROLES and not scope:
        raise ValueError(f"role {role!r} needs a scope ({SCOPED_ROLES[role]})")
    if role not in SCOPED_ROLES and scope:
        raise ValueError(f"role {role!r} sees the whole city and takes no scope")
