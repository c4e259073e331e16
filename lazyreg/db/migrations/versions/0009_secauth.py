"""revocable tokens: users.token_generation and the api_tokens table

Revision ID: 0009
Revises: 0007

A plain ADD COLUMN (no batch rebuild of users: on SQLite that would
cascade-delete the rows that point at it). Tokens issued before this
revision named the user by name and carry no generation: they stop working,
and their holders log in again.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('users', sa.Column('token_generation', sa.Integer(), nullable=False,
                                     server_default='0'))
    op.create_table('api_tokens',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('parent', sa.String(length=32), nullable=True),
    sa.Column('created', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'))
    op.create_index('ix_api_tokens_user_id', 'api_tokens', ['user_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_api_tokens_user_id', 'api_tokens')
    op.drop_table('api_tokens')
    op.execute('ALTER TABLE users DROP COLUMN token_generation')
