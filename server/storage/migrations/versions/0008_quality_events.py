"""quality events: a point's alarms and connection tests, kept

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('quality_events',
    sa.Column('event_id', sa.String(length=32), nullable=False),
    sa.Column('session_id', sa.Integer(), nullable=False),
    sa.Column('bridge_point_id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('reasons', sa.String(length=200), nullable=False),
    sa.Column('rtt_ms', sa.Float(), nullable=True),
    sa.Column('loss_pct', sa.Float(), nullable=True),
    sa.Column('jitter_ms', sa.Float(), nullable=True),
    sa.Column('bitrate_kbps', sa.Float(), nullable=True),
    sa.Column('video_frames', sa.Integer(), nullable=True),
    sa.Column('audio', sa.Boolean(), nullable=True),
    sa.Column('detail', sa.String(length=200), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['bridge_point_id'], ['bridge_points.id'], name=op.f('fk_quality_events_bridge_point_id_bridge_points'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['session_id'], ['sessions.id'], name=op.f('fk_quality_events_session_id_sessions'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_quality_events_user_id_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('event_id', name=op.f('pk_quality_events'))
    )
    op.create_index(op.f('ix_quality_events_bridge_point_id'), 'quality_events', ['bridge_point_id'], unique=False)
    op.create_index('ix_quality_events_session_point', 'quality_events', ['session_id', 'bridge_point_id', 'at'],
                    unique=False)


def downgrade() -> None:
    op.drop_index('ix_quality_events_session_point', table_name='quality_events')
    op.drop_index(op.f('ix_quality_events_bridge_point_id'), table_name='quality_events')
    op.drop_table('quality_events')
