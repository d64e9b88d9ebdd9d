"""relays: the cascade's relay nodes, their unit, parent and token digest

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('relays',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('unit_id', sa.Integer(), nullable=False),
    sa.Column('url', sa.String(length=300), nullable=False),
    sa.Column('parent_id', sa.Integer(), nullable=True),
    sa.Column('token_digest', sa.String(length=64), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['parent_id'], ['relays.id'], name=op.f('fk_relays_parent_id_relays'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['unit_id'], ['units.id'], name=op.f('fk_relays_unit_id_units'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_relays')),
    sa.UniqueConstraint('name', name=op.f('uq_relays_name')),
    sa.UniqueConstraint('token_digest', name=op.f('uq_relays_token_digest'))
    )
    op.create_index(op.f('ix_relays_parent_id'), 'relays', ['parent_id'], unique=False)
    op.create_index(op.f('ix_relays_unit_id'), 'relays', ['unit_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_relays_unit_id'), table_name='relays')
    op.drop_index(op.f('ix_relays_parent_id'), table_name='relays')
    op.drop_table('relays')
