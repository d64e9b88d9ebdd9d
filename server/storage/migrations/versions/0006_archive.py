"""the archive: recordings, their parts and chapters, replay progress, deletion audit; sessions.record

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02

A session has at most one recording (unique session_id), made of numbered
parts; replay progress is one row per member and recording. Existing
sessions are recorded by default.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('recordings',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('session_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.Enum('recording', 'ready', 'interrupted', 'failed', 'deleted', name='recording_status', native_enum=False, length=16), nullable=False),
    sa.Column('node', sa.String(length=64), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('duration_seconds', sa.Float(), nullable=False),
    sa.Column('size_bytes', sa.BigInteger(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('file', sa.String(length=300), nullable=False),
    sa.Column('mp4_file', sa.String(length=300), nullable=False),
    sa.Column('poster_file', sa.String(length=300), nullable=False),
    sa.Column('mp4_status', sa.Enum('waiting', 'pending', 'running', 'done', 'failed', name='job_status', native_enum=False, length=16), nullable=False),
    sa.Column('mp4_progress', sa.Float(), nullable=False),
    sa.Column('mp4_attempts', sa.Integer(), nullable=False),
    sa.Column('mp4_error', sa.Text(), nullable=False),
    sa.Column('mp4_not_before', sa.DateTime(timezone=True), nullable=True),
    sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['session_id'], ['sessions.id'], name=op.f('fk_recordings_session_id_sessions'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_recordings')),
    sa.UniqueConstraint('session_id', name=op.f('uq_recordings_session_id'))
    )
    with op.batch_alter_table('recordings', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_recordings_ended_at'), ['ended_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_recordings_status'), ['status'], unique=False)

    op.create_table('recording_audit',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('recording_id', sa.Integer(), nullable=False),
    sa.Column('actor_id', sa.Integer(), nullable=True),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['actor_id'], ['users.id'], name=op.f('fk_recording_audit_actor_id_users'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['recording_id'], ['recordings.id'], name=op.f('fk_recording_audit_recording_id_recordings'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_recording_audit'))
    )
    with op.batch_alter_table('recording_audit', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_recording_audit_recording_id'), ['recording_id'], unique=False)

    op.create_table('recording_chapters',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('recording_id', sa.Integer(), nullable=False),
    sa.Column('at_seconds', sa.Float(), nullable=False),
    sa.Column('participant_key', sa.String(length=32), nullable=False),
    sa.Column('kind', sa.String(length=12), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('event_id', sa.String(length=40), nullable=False),
    sa.ForeignKeyConstraint(['recording_id'], ['recordings.id'], name=op.f('fk_recording_chapters_recording_id_recordings'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_recording_chapters')),
    sa.UniqueConstraint('event_id', name=op.f('uq_recording_chapters_event_id'))
    )
    with op.batch_alter_table('recording_chapters', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_recording_chapters_recording_id'), ['recording_id'], unique=False)

    op.create_table('recording_parts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('recording_id', sa.Integer(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('file', sa.String(length=300), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('offset_seconds', sa.Float(), nullable=False),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('duration_seconds', sa.Float(), nullable=False),
    sa.Column('size_bytes', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('node', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['recording_id'], ['recordings.id'], name=op.f('fk_recording_parts_recording_id_recordings'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_recording_parts'))
    )
    with op.batch_alter_table('recording_parts', schema=None) as batch_op:
        batch_op.create_index('uq_recording_parts_number', ['recording_id', 'number'], unique=True)

    op.create_table('replay_progress',
    sa.Column('recording_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('ranges', sa.Text(), nullable=False),
    sa.Column('credited_seconds', sa.Float(), nullable=False),
    sa.Column('last_report_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('position_seconds', sa.Float(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['recording_id'], ['recordings.id'], name=op.f('fk_replay_progress_recording_id_recordings'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_replay_progress_user_id_users'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('recording_id', 'user_id', name=op.f('pk_replay_progress'))
    )
    with op.batch_alter_table('replay_progress', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_replay_progress_user_id'), ['user_id'], unique=False)

    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('record', sa.Boolean(), server_default=sa.text('true'), nullable=False))



def downgrade() -> None:
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.drop_column('record')

    with op.batch_alter_table('replay_progress', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_replay_progress_user_id'))

    op.drop_table('replay_progress')
    with op.batch_alter_table('recording_parts', schema=None) as batch_op:
        batch_op.drop_index('uq_recording_parts_number')

    op.drop_table('recording_parts')
    with op.batch_alter_table('recording_chapters', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_recording_chapters_recording_id'))

    op.drop_table('recording_chapters')
    with op.batch_alter_table('recording_audit', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_recording_audit_recording_id'))

    op.drop_table('recording_audit')
    with op.batch_alter_table('recordings', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_recordings_status'))
        batch_op.drop_index(batch_op.f('ix_recordings_ended_at'))

    op.drop_table('recordings')
