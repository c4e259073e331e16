"""access control: users, distribution readers, encrypted remote secrets

Revision ID: 0003
Revises: 0002

Remote passwords and proxy credentials move to encrypted columns. Encrypting
the ones already stored needs the secret key: `lazyreg.db.engine.migrate`
passes a `SecretBox` as the `secrets` attribute of the Alembic config.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

from lazyreg.redact import split_userinfo

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('users',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('username', sa.String(length=255), nullable=False),
    sa.Column('password_hash', sa.Text(), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('created', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('username')
    )
    op.create_table('distribution_readers',
    sa.Column('distribution_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['distribution_id'], ['distributions.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('distribution_id', 'user_id')
    )
    op.create_index('ix_distribution_readers_user_id', 'distribution_readers', ['user_id'])
    # Plain ADD COLUMN, no batch rebuild: rebuilding a parent table on SQLite would
    # cascade-delete the rows that point at it.
    op.add_column('remotes', sa.Column('password_secret', sa.Text(), nullable=True))
    op.add_column('remotes', sa.Column('proxy_secret', sa.Text(), nullable=True))
    op.add_column('remotes', sa.Column('allow_private_redirects', sa.Boolean(),
                                       nullable=False, server_default=sa.false()))
    op.add_column('distributions', sa.Column('anonymous_pull_through', sa.Boolean(),
                                             nullable=False, server_default=sa.true()))

    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT id, password, proxy_url FROM remotes"
                                " WHERE password IS NOT NULL OR proxy_url LIKE '%@%'")).all()
    if rows:
        secrets = context.config.attributes.get("secrets")
        if secrets is None:
            raise RuntimeError("migration 0003 encrypts remote passwords and needs the secret"
                               " key: run it through lazyreg serve")
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("PRAGMA secure_delete=ON")  # overwrite the freed plain text
        for remote_id, password, proxy_url in rows:
            proxy, userinfo = split_userinfo(proxy_url) if proxy_url else (None, None)
            conn.execute(sa.text(
                "UPDATE remotes SET password_secret = :pw, proxy_url = :proxy,"
                " proxy_secret = :ps, password = NULL WHERE id = :id"),
                {"pw": secrets.encrypt(password) if password is not None else None,
                 "proxy": proxy, "ps": secrets.encrypt(userinfo) if userinfo else None,
                 "id": remote_id})
    op.execute('ALTER TABLE remotes DROP COLUMN password')


def downgrade() -> None:
    # The secrets stay encrypted: a downgraded server would need them set again.
    op.add_column('remotes', sa.Column('password', sa.Text(), nullable=True))
    for table, column in (('distributions', 'anonymous_pull_through'),
                          ('remotes', 'allow_private_redirects'),
                          ('remotes', 'proxy_secret'), ('remotes', 'password_secret')):
        op.execute(f'ALTER TABLE {table} DROP COLUMN {column}')
    op.drop_index('ix_distribution_readers_user_id', 'distribution_readers')
    op.drop_table('distribution_readers')
    op.drop_table('users')
