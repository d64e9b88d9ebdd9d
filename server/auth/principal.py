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

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    def has_role(self, *roles: Role) -> bool:
        return self.role in roles
