"""workers: blob traffic of the whole deployment, per minute

Revision ID: 0015
Revises: 0014

Every server process adds its hits, joins, misses and bytes to the row of the
minute (and to the all-time row, minute -1), so that every node's status page
shows the same figures.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None

COUNTERS = ('hits', 'joins', 'misses', 'storage_bytes', 'joined_bytes', 'upstream_bytes',
            'fetched_bytes')


def upgrade() -> None:
    op.create_table(
        'traffic_minutes',
        sa.Column('minute', sa.BigInteger(), autoincrement=False, nullable=False),
        *(sa.Column(name, sa.BigInteger(), nullable=False, server_default='0')
          for name in COUNTERS),
        sa.PrimaryKeyConstraint('minute'),
    )


def downgrade() -> None:
    op.drop_table('traffic_minutes')
