"""disk space: immediate repositories, last use of artifacts, content age

Revision ID: 0007
Revises: 0006

Columns and indexes only, each added with a plain ALTER TABLE / CREATE INDEX:
on SQLite a batch rebuild of a parent table (repositories, content) would
cascade-delete the rows that point at it.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

INDEXES = (
    ('ix_artifacts_last_used', 'artifacts', ['last_used']),
    ('ix_repo_content_content', 'repository_content', ['content_id']),
    ('ix_tags_manifest_id', 'tags', ['manifest_id']),
)


def upgrade() -> None:
    op.add_column('repositories', sa.Column('sync_policy', sa.String(length=16), nullable=True))
    op.add_column('content', sa.Column('created', sa.DateTime(timezone=True), nullable=True))
    op.add_column('artifacts', sa.Column('last_used', sa.Float(), nullable=True))
    op.add_column('artifacts', sa.Column('busy_until', sa.Float(), nullable=True))
    # What was stored before has no known last use: the first to go.
    op.execute('UPDATE artifacts SET last_used = 0')
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns, unique=False)


def downgrade() -> None:
    for name, table, _ in INDEXES:
        op.drop_index(name, table)
    for table, column in (('artifacts', 'busy_until'), ('artifacts', 'last_used'),
                          ('content', 'created'), ('repositories', 'sync_policy')):
        op.execute(f'ALTER TABLE {table} DROP COLUMN {column}')
