"""Artifact rows: one writer, idempotent."""

from __future__ import annotations

from lazyreg.db.artifacts import NewArtifact, is_stored, record_artifacts, stored_digests
from lazyreg.db.engine import Database

ONE = NewArtifact("sha256:" + "1" * 64, 10, "layer", "sha256/11/" + "1" * 64)
TWO = NewArtifact("sha256:" + "2" * 64, 20, "config", "sha256/22/" + "2" * 64)


def test_recording_twice_keeps_one_row(db: Database) -> None:
    with db.write_session() as s:
        record_artifacts(s, [ONE])
    with db.write_session() as s:
        record_artifacts(s, [ONE, TWO, TWO])
        record_artifacts(s, [])
    with db.read_session() as s:
        assert is_stored(s, ONE.digest) and is_stored(s, TWO.digest)
        assert not is_stored(s, "sha256:" + "3" * 64)
        assert stored_digests(s, [ONE.digest, "sha256:" + "3" * 64]) == {ONE.digest}
