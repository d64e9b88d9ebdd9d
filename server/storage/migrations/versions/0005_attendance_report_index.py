"""attendance records: a covering index for the unit reports

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03

A unit's report over a year sums half a million records grouped by session
and unit; with this index the database reads the index alone, in the order
of the grouping.
"""

from __future__ import annotations

from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('attendance_records', schema=None) as batch_op:
        batch_op.create_index('ix_attendance_records_session_unit',
                              ['session_id', 'unit_id', 'status', 'credited_seconds'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('attendance_records', schema=None) as batch_op:
        batch_op.drop_index('ix_attendance_records_session_unit')
