"""coherence: the change feed of the in-memory caches, and the processes that follow it

Revision ID: 0010
Revises: 0009
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    counter = op.create_table(
        'cache_counter',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('generation', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('id'))
    op.bulk_insert(counter, [{'id': 1, 'generation': 0}])
    op.create_table(
        'cache_changes',
        sa.Column('generation', sa.BigInteger(), nullable=False),
        sa.Column('key', sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint('generation', 'key'))
    op.create_table(
        'cache_nodes',
        sa.Column('worker', sa.String(length=255), nullable=False),
        sa.Column('seen', sa.BigInteger(), nullable=False),
        sa.Column('heartbeat', sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint('worker'))


def downgrade() -> None:
    op.drop_table('cache_nodes')
    op.drop_table('cache_changes')
    op.drop_table('cache_counter')
