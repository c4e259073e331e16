"""pull-through distributions: remote freshness settings, name filters, retained versions

Revision ID: 0006
Revises: 0005

Columns are added, never a table rebuilt: on SQLite a batch rebuild of a
parent table (remotes, repositories, distributions) would cascade-delete the
rows that point at it.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('remotes', sa.Column('tag_ttl', sa.Integer(), nullable=False,
                                       server_default='300'))
    op.add_column('remotes', sa.Column('negative_ttl', sa.Integer(), nullable=False,
                                       server_default='30'))
    op.add_column('remotes', sa.Column('include_names', sa.JSON(), nullable=True))
    op.add_column('remotes', sa.Column('exclude_names', sa.JSON(), nullable=True))
    op.add_column('repositories', sa.Column('retain_versions', sa.Integer(), nullable=True))
    op.add_column('distributions', sa.Column('pull_through', sa.Boolean(), nullable=False,
                                             server_default=sa.false()))
    if op.get_bind().dialect.name == 'sqlite':
        # SQLite takes a foreign key only inline, in the ADD COLUMN itself.
        op.execute('ALTER TABLE distributions ADD COLUMN remote_id INTEGER'
                   ' REFERENCES remotes (id) ON DELETE SET NULL')
    else:
        op.add_column('distributions', sa.Column('remote_id', sa.Integer(), nullable=True))
        op.create_foreign_key('fk_distributions_remote_id', 'distributions', 'remotes',
                              ['remote_id'], ['id'], ondelete='SET NULL')
    op.create_table(
        'pull_through_repositories',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('distribution_id', sa.Integer(), nullable=False),
        sa.Column('upstream_name', sa.String(length=255), nullable=False),
        sa.Column('repository_id', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['distribution_id'], ['distributions.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['repository_id'], ['repositories.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('distribution_id', 'upstream_name'),
        sa.UniqueConstraint('repository_id'),
    )
    op.create_table(
        'pull_through_tags',
        sa.Column('repository_id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=128), nullable=False),
        sa.Column('checked', sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(['repository_id'], ['repositories.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('repository_id', 'name'),
    )


def downgrade() -> None:
    op.drop_table('pull_through_tags')
    op.drop_table('pull_through_repositories')
    if op.get_bind().dialect.name != 'sqlite':
        op.drop_constraint('fk_distributions_remote_id', 'distributions', type_='foreignkey')
    # Plain DROP COLUMN (SQLite 3.35+), for the same reason as above.
    for table, column in (('distributions', 'remote_id'), ('distributions', 'pull_through'),
                          ('repositories', 'retain_versions'), ('remotes', 'exclude_names'),
                          ('remotes', 'include_names'), ('remotes', 'negative_ttl'),
                          ('remotes', 'tag_ttl')):
        op.execute(f'ALTER TABLE {table} DROP COLUMN {column}')
