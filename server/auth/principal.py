"""Who is calling: the authenticated user as the rest of the code sees them."""

from __future__ import annotations

from dataclasses import dataclass

from server.auth.roles import Role


@dataclass(frozen=True)
class Principal:
    user_id: int
    username: str
    full_name: str
    role: Role
    unit_id: int | None
    bridge_point_id: int | None
    token_version: int
    # Set when the token was issued for one live session only.
    session_scope: int | None = None
    # The token this principal came with: its id (revocation on sign-out) and expiry (Unix
    # seconds; live connections end there). Empty/None for a principal not made from a token.
    token_id: str = ""
    expires_at: int | None = None

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    def has_role(self, *roles: Role) -> bool:
        return self.role in roles
