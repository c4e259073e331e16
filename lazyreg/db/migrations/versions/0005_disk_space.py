"""disk space: retained versions, immediate repositories, last use of artifacts, content age

Revision ID: 0005
Revises: 0004

Columns and indexes only, each added with a plain ALTER TABLE / CREATE INDEX:
on SQLite a batch rebuild of a parent table (repositories, content) would
cascade-delete the rows that point at it.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

INDEXES = (
    ('ix_artifacts_last_used', 'artifacts', ['last_used']),
    ('ix_repo_content_content', 'repository_content', ['content_id']),
    ('ix_tags_manifest_id', 'tags', ['manifest_id']),
)


def _has_column(table: str, column: str) -> bool:
    return column in {c['name'] for c in sa.inspect(op.get_bind()).get_columns(table)}


def upgrade() -> None:
    # The pull-through migration adds the same column: whichever runs first adds it.
    if not _has_column('repositories', 'retain_versions'):
        op.add_column('repositories', sa.Column('retain_versions', sa.Integer(), nullable=True))
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
                          ('content', 'created'), ('repositories', 'sync_policy'),
                          ('repositories', 'retain_versions')):
        op.execute(f'ALTER TABLE {table} DROP COLUMN {column}')
