"""lease state: running, done or failed, beside the owner

Revision ID: 0004
Revises: 0003
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('leases') as batch_op:
        batch_op.add_column(sa.Column('state', sa.String(length=16), nullable=False,
                                      server_default='running'))
    # Before this column, a verified download was marked by a `done:` prefix on its owner.
    op.execute("UPDATE leases SET state = 'done', owner = substr(owner, 6)"
               " WHERE owner LIKE 'done:%'")


def downgrade() -> None:
    op.execute("UPDATE leases SET owner = 'done:' || owner WHERE state = 'done'")
    op.execute("DELETE FROM leases WHERE state = 'failed'")
    with op.batch_alter_table('leases') as batch_op:
        batch_op.drop_column('state')
