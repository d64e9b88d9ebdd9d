"""floor grants

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('floor_grants',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('session_id', sa.Integer(), nullable=False),
    sa.Column('bridge_point_id', sa.Integer(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('limit_seconds', sa.Integer(), nullable=True),
    sa.Column('end_reason', sa.String(length=16), nullable=False),
    sa.ForeignKeyConstraint(['bridge_point_id'], ['bridge_points.id'], name=op.f('fk_floor_grants_bridge_point_id_bridge_points'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['session_id'], ['sessions.id'], name=op.f('fk_floor_grants_session_id_sessions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_floor_grants'))
    )
    with op.batch_alter_table('floor_grants', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_floor_grants_bridge_point_id'), ['bridge_point_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_floor_grants_session_id'), ['session_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('floor_grants', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_floor_grants_session_id'))
        batch_op.drop_index(batch_op.f('ix_floor_grants_bridge_point_id'))

    op.drop_table('floor_grants')
