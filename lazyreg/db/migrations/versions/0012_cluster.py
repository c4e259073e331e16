"""cluster: a lease names where its owner can be reached by its peers

Revision ID: 0012
Revises: 0010

`leases.url`: the `cluster_url` of the server process that holds the lease
(null for a server that is not in a cluster), so that a follower on another
node reads the landed bytes from the leader's internal endpoint.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('leases', sa.Column('url', sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('leases') as batch_op:
        batch_op.drop_column('url')
