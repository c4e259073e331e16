"""referrers, manifest sources, repository uids, task warnings, remote limits

Revision ID: 0002
Revises: 0001
"""
from __future__ import annotations

import json
import uuid

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def _subject(data: bytes) -> tuple[str | None, str | None]:
    try:
        doc = json.loads(data)
    except ValueError:
        return None, None
    if not isinstance(doc, dict):
        return None, None
    subject = doc.get("subject")
    digest = subject.get("digest") if isinstance(subject, dict) else None
    artifact_type = doc.get("artifactType")
    if not isinstance(artifact_type, str):
        config = doc.get("config")
        artifact_type = config.get("mediaType") if isinstance(config, dict) else None
    return (digest if isinstance(digest, str) else None,
            artifact_type if isinstance(artifact_type, str) else None)


def upgrade() -> None:
    with op.batch_alter_table('remotes') as batch_op:
        batch_op.add_column(sa.Column('include_referrers', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
        batch_op.add_column(sa.Column('max_tags', sa.Integer(), nullable=False,
                                      server_default='100000'))
    with op.batch_alter_table('repositories') as batch_op:
        batch_op.add_column(sa.Column('uid', sa.String(length=32), nullable=True))
    with op.batch_alter_table('manifests') as batch_op:
        batch_op.add_column(sa.Column('subject_digest', sa.String(length=80), nullable=True))
        batch_op.add_column(sa.Column('artifact_type', sa.String(length=255), nullable=True))
        batch_op.create_index(batch_op.f('ix_manifests_subject_digest'), ['subject_digest'],
                              unique=False)
    with op.batch_alter_table('tasks') as batch_op:
        batch_op.add_column(sa.Column('warnings', sa.JSON(), nullable=True))
    op.create_table('manifest_sources',
    sa.Column('manifest_id', sa.Integer(), nullable=False),
    sa.Column('remote_id', sa.Integer(), nullable=False),
    sa.Column('upstream_name', sa.String(length=255), nullable=False),
    sa.ForeignKeyConstraint(['manifest_id'], ['manifests.id'], ),
    sa.ForeignKeyConstraint(['remote_id'], ['remotes.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('manifest_id', 'remote_id', 'upstream_name')
    )

    conn = op.get_bind()
    for (repo_id,) in conn.execute(sa.text("SELECT id FROM repositories")).all():
        conn.execute(sa.text("UPDATE repositories SET uid = :uid WHERE id = :id"),
                     {"uid": uuid.uuid4().hex, "id": repo_id})
    # An index, not a table rebuild: on SQLite, rebuilding `repositories` would
    # cascade-delete every version and distribution that points at it.
    op.create_index('ix_repositories_uid', 'repositories', ['uid'], unique=True)
    # Referrers of manifests synced before this migration, a batch at a time.
    last = 0
    while True:
        rows = conn.execute(sa.text("SELECT id, data FROM manifests WHERE id > :last"
                                    " ORDER BY id LIMIT 500"), {"last": last}).all()
        if not rows:
            break
        for manifest_id, data in rows:
            subject, artifact_type = _subject(bytes(data))
            if subject:
                conn.execute(sa.text("UPDATE manifests SET subject_digest = :s,"
                                     " artifact_type = :t WHERE id = :id"),
                             {"s": subject, "t": artifact_type, "id": manifest_id})
        last = rows[-1][0]


def downgrade() -> None:
    # Plain ALTER TABLE ... DROP COLUMN (SQLite 3.35+): a batch rebuild of a parent
    # table would cascade-delete, or refuse to drop, the rows that point at it.
    op.drop_table('manifest_sources')
    op.drop_index('ix_repositories_uid', 'repositories')
    op.drop_index('ix_manifests_subject_digest', 'manifests')
    for table, column in (('tasks', 'warnings'), ('manifests', 'artifact_type'),
                          ('manifests', 'subject_digest'), ('repositories', 'uid'),
                          ('remotes', 'max_tags'), ('remotes', 'include_referrers')):
        op.execute(f'ALTER TABLE {table} DROP COLUMN {column}')
