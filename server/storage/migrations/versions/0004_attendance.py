"""attendance: presence events, node heartbeats, check-ins, corrections, audit, records

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02

Presence events are append-only and unique by the live event's id, so the
same event delivered twice is stored once; a member has at most one open
check-in per session (a partial unique index on both backends).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('node_heartbeats',
    sa.Column('node', sa.String(length=64), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('node', name=op.f('pk_node_heartbeats'))
    )
    op.create_table('attendance_audit',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor_id', sa.Integer(), nullable=False),
    sa.Column('session_id', sa.Integer(), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('action', sa.String(length=24), nullable=False),
    sa.Column('before', sa.Text(), nullable=False),
    sa.Column('after', sa.Text(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['actor_id'], ['users.id'], name=op.f('fk_attendance_audit_actor_id_users'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['member_id'], ['users.id'], name=op.f('fk_attendance_audit_member_id_users'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['session_id'], ['sessions.id'], name=op.f('fk_attendance_audit_session_id_sessions'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_attendance_audit'))
    )
    with op.batch_alter_table('attendance_audit', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_attendance_audit_session_id'), ['session_id'], unique=False)

    op.create_table('attendance_corrections',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('session_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=True),
    sa.Column('credited_seconds', sa.Integer(), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('corrected_by_id', sa.Integer(), nullable=False),
    sa.Column('corrected_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['corrected_by_id'], ['users.id'], name=op.f('fk_attendance_corrections_corrected_by_id_users'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['session_id'], ['sessions.id'], name=op.f('fk_attendance_corrections_session_id_sessions'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_attendance_corrections_user_id_users'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_attendance_corrections'))
    )
    with op.batch_alter_table('attendance_corrections', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_attendance_corrections_session_id'), ['session_id'], unique=False)

    op.create_table('attendance_records',
    sa.Column('session_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('unit_id', sa.Integer(), nullable=True),
    sa.Column('bridge_point_id', sa.Integer(), nullable=True),
    sa.Column('live_seconds', sa.Integer(), nullable=False),
    sa.Column('replay_seconds', sa.Integer(), nullable=False),
    sa.Column('credited_seconds', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('late_minutes', sa.Integer(), nullable=False),
    sa.Column('early_minutes', sa.Integer(), nullable=False),
    sa.Column('checked_in', sa.Boolean(), nullable=False),
    sa.Column('corrected', sa.Boolean(), nullable=False),
    sa.Column('computed_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['bridge_point_id'], ['bridge_points.id'], name=op.f('fk_attendance_records_bridge_point_id_bridge_points'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['session_id'], ['sessions.id'], name=op.f('fk_attendance_records_session_id_sessions'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['unit_id'], ['units.id'], name=op.f('fk_attendance_records_unit_id_units'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_attendance_records_user_id_users'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('session_id', 'user_id', name=op.f('pk_attendance_records'))
    )
    with op.batch_alter_table('attendance_records', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_attendance_records_unit_id'), ['unit_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_attendance_records_user_id'), ['user_id'], unique=False)

    op.create_table('checkins',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('session_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('bridge_point_id', sa.Integer(), nullable=False),
    sa.Column('checked_in_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('checked_out_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('source', sa.Enum('qr', 'code', 'manual', name='checkin_source', native_enum=False, length=16), nullable=False),
    sa.Column('recorded_by_id', sa.Integer(), nullable=True),
    sa.Column('removed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('removed_by_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['bridge_point_id'], ['bridge_points.id'], name=op.f('fk_checkins_bridge_point_id_bridge_points'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['recorded_by_id'], ['users.id'], name=op.f('fk_checkins_recorded_by_id_users'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['removed_by_id'], ['users.id'], name=op.f('fk_checkins_removed_by_id_users'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['session_id'], ['sessions.id'], name=op.f('fk_checkins_session_id_sessions'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_checkins_user_id_users'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_checkins'))
    )
    with op.batch_alter_table('checkins', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_checkins_session_id'), ['session_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_checkins_user_id'), ['user_id'], unique=False)
        batch_op.create_index('uq_checkins_open', ['session_id', 'user_id'], unique=True, sqlite_where=sa.text('checked_out_at IS NULL AND removed_at IS NULL'), postgresql_where=sa.text('checked_out_at IS NULL AND removed_at IS NULL'))

    op.create_table('presence_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('event_id', sa.String(length=40), nullable=False),
    sa.Column('session_id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('kind', sa.String(length=12), nullable=False),
    sa.Column('endpoint_id', sa.String(length=64), nullable=False),
    sa.Column('endpoint_kind', sa.String(length=8), nullable=False),
    sa.Column('participant_key', sa.String(length=32), nullable=False),
    sa.Column('role', sa.String(length=8), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('bridge_point_id', sa.Integer(), nullable=True),
    sa.Column('node', sa.String(length=64), nullable=False),
    sa.CheckConstraint("kind IN ('join', 'leave', 'drop', 'server_stop')", name=op.f('ck_presence_events_kind')),
    sa.ForeignKeyConstraint(['bridge_point_id'], ['bridge_points.id'], name=op.f('fk_presence_events_bridge_point_id_bridge_points'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['session_id'], ['sessions.id'], name=op.f('fk_presence_events_session_id_sessions'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_presence_events_user_id_users'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_presence_events')),
    sa.UniqueConstraint('event_id', name=op.f('uq_presence_events_event_id'))
    )
    with op.batch_alter_table('presence_events', schema=None) as batch_op:
        batch_op.create_index('ix_presence_events_node_endpoint', ['node', 'endpoint_id'], unique=False)
        batch_op.create_index('ix_presence_events_session_participant', ['session_id', 'participant_key'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('presence_events', schema=None) as batch_op:
        batch_op.drop_index('ix_presence_events_session_participant')
        batch_op.drop_index('ix_presence_events_node_endpoint')

    op.drop_table('presence_events')
    with op.batch_alter_table('checkins', schema=None) as batch_op:
        batch_op.drop_index('uq_checkins_open', sqlite_where=sa.text('checked_out_at IS NULL AND removed_at IS NULL'), postgresql_where=sa.text('checked_out_at IS NULL AND removed_at IS NULL'))
        batch_op.drop_index(batch_op.f('ix_checkins_user_id'))
        batch_op.drop_index(batch_op.f('ix_checkins_session_id'))

    op.drop_table('checkins')
    with op.batch_alter_table('attendance_records', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_attendance_records_user_id'))
        batch_op.drop_index(batch_op.f('ix_attendance_records_unit_id'))

    op.drop_table('attendance_records')
    with op.batch_alter_table('attendance_corrections', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_attendance_corrections_session_id'))

    op.drop_table('attendance_corrections')
    with op.batch_alter_table('attendance_audit', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_attendance_audit_session_id'))

    op.drop_table('attendance_audit')
    op.drop_table('node_heartbeats')
