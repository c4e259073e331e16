"""digest columns wide enough for sha512 (`sha512:` + 128 hex = 135 characters)

Revision ID: 0005
Revises: 0004
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

COLUMNS = (('manifests', 'digest'), ('manifests', 'config_digest'),
           ('manifests', 'subject_digest'), ('blobs', 'digest'), ('artifacts', 'digest'))


def _alter(length: int) -> None:
    # SQLite does not enforce a VARCHAR's length (and rebuilding these parent tables
    # there would cascade-delete their children): only other databases need it.
    if op.get_bind().dialect.name == 'sqlite':
        return
    for table, column in COLUMNS:
        op.alter_column(table, column, type_=sa.String(length=length))


def upgrade() -> None:
    _alter(150)


def downgrade() -> None:
    _alter(80)
