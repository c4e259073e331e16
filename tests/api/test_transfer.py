"""Where exports may write and imports may read: `transfer_paths`."""

from __future__ import annotations

from pathlib import Path

import pytest

from lazyreg.api.transfer import allowed_path
from lazyreg.config import Settings
from lazyreg.errors import InvalidField


def test_with_auth_off_any_absolute_path_is_allowed(tmp_path: Path) -> None:
    settings = Settings(auth="off")
    assert allowed_path(settings, str(tmp_path / "a" / ".." / "x.tar"), "output") == \
        tmp_path / "x.tar"
    with pytest.raises(InvalidField, match="absolute"):
        allowed_path(settings, "x.tar", "output")


def test_with_auth_on_nothing_is_allowed_until_transfer_paths_says_where(tmp_path: Path) -> None:
    with pytest.raises(InvalidField, match="transfer_paths"):
        allowed_path(Settings(auth="on"), str(tmp_path / "x.tar"), "output")
    settings = Settings(auth="on", transfer_paths=[tmp_path / "exports"])
    (tmp_path / "exports").mkdir()
    assert allowed_path(settings, str(tmp_path / "exports" / "x.tar"), "output")
    for outside in (tmp_path / "x.tar", tmp_path / "exports" / ".." / "x.tar"):
        with pytest.raises(InvalidField, match="not below"):
            allowed_path(settings, str(outside), "input")
    # A symlink inside that points outside does not count as inside.
    (tmp_path / "exports" / "link").symlink_to(tmp_path)
    with pytest.raises(InvalidField, match="not below"):
        allowed_path(settings, str(tmp_path / "exports" / "link" / "x.tar"), "output")
