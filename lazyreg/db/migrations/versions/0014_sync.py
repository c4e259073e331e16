"""sync: platform filter and prefetch on remotes, sync schedules

Revision ID: 0014
Revises: 0010

Columns added with a plain ALTER TABLE and one new table: on SQLite a batch
rebuild of a parent table would cascade-delete the rows that point at it. A
manifest recorded but not fetched (platform filter) keeps `data` empty, so
`manifests` is not altered.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0014'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('remotes', sa.Column('platforms', sa.JSON(), nullable=True))
    op.add_column('remotes', sa.Column('prefetch', sa.String(length=16), nullable=False,
                                       server_default='none'))
    op.create_table(
        'sync_schedules',
        sa.Column('repository_id', sa.Integer(), nullable=False),
        sa.Column('remote_id', sa.Integer(), nullable=False),
        sa.Column('mirror', sa.Boolean(), nullable=False),
        sa.Column('interval', sa.Integer(), nullable=False),
        sa.Column('next_run', sa.Float(), nullable=False),
        sa.Column('task_id', sa.String(length=36), nullable=True),
        sa.Column('claimed', sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(['repository_id'], ['repositories.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['remote_id'], ['remotes.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('repository_id'),
    )
    op.create_index('ix_sync_schedules_next_run', 'sync_schedules', ['next_run'])


def downgrade() -> None:
    op.drop_index('ix_sync_schedules_next_run', table_name='sync_schedules')
    op.drop_table('sync_schedules')
    op.drop_column('remotes', 'prefetch')
    op.drop_column('remotes', 'platforms')
