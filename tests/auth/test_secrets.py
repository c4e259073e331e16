"""The secret box: a 0600 key file, encryption that round-trips, and a clear failure."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from lazyreg.auth.secrets import load_secret_box
from lazyreg.errors import SecretUnavailable


def test_key_file_is_created_0600_and_reused(tmp_path: Path) -> None:
    key_file = tmp_path / "data" / "secret.key"
    box = load_secret_box(None, key_file)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    sealed = box.encrypt("hunter2")
    assert "hunter2" not in sealed
    assert load_secret_box(None, key_file).decrypt(sealed, "x") == "hunter2"
    assert load_secret_box(None, key_file).signing_key == box.signing_key


def test_a_lost_key_file_says_what_cannot_be_decrypted(tmp_path: Path) -> None:
    key_file = tmp_path / "secret.key"
    sealed = load_secret_box(None, key_file).encrypt("hunter2")
    key_file.unlink()
    other = load_secret_box(None, key_file)
    assert not other.can_decrypt(sealed)
    with pytest.raises(SecretUnavailable, match=r"cannot decrypt the password of remote 'hub'"
                       r".*another secret key.*Restore"):
        other.decrypt(sealed, "the password of remote 'hub'")


def test_environment_key(tmp_path: Path) -> None:
    a = load_secret_box("a" * 32, tmp_path / "unused.key")
    assert not (tmp_path / "unused.key").exists()
    assert load_secret_box("a" * 32, tmp_path / "x").decrypt(a.encrypt("pw"), "x") == "pw"
    assert not load_secret_box("b" * 32, tmp_path / "x").can_decrypt(a.encrypt("pw"))
    with pytest.raises(ValueError, match="at least 32"):
        load_secret_box("short", tmp_path / "x")
