"""floor grants keyed by the live domain's grant id

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

The floor-grant store is a subscriber of the event stream: a grant's start
and end arrive as events naming the grant, and the same event delivered
twice must change nothing, so the grant's id is a unique key.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('floor_grants', schema=None) as batch_op:
        batch_op.add_column(sa.Column('grant_key', sa.String(length=32), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_floor_grants_grant_key'), ['grant_key'])


def downgrade() -> None:
    with op.batch_alter_table('floor_grants', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_floor_grants_grant_key'), type_='unique')
        batch_op.drop_column('grant_key')
