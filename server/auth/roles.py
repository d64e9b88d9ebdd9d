"""Account roles: what a user is in the organisation (not their role in one live session).

Pure: storage keeps it in a column, auth carries it in the principal, the live
domain turns it into a live role (``server.live.roles.live_role``).
"""

from __future__ import annotations

import enum


class Role(enum.StrEnum):
    ADMIN = "admin"
    SPEAKER = "speaker"
    OPERATOR = "operator"
    MEMBER = "member"
