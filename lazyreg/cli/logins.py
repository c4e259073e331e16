"""Where `lazyreg login` keeps its tokens: one JSON file, mode 0600, in the user's config dir.

`$XDG_CONFIG_HOME/lazyreg/tokens.json` (default `~/.config/lazyreg/`), holding
one token per server URL. `LAZYREG_TOKEN` overrides whatever is stored.
The file is written whole to a temporary file created 0600 and renamed over
the old one, so it is never readable by others, not even for a moment.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

MAX_FILE_SIZE = 1024 * 1024


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "lazyreg"


def tokens_file() -> Path:
    return config_dir() / "tokens.json"


def _key(server: str) -> str:
    return server.rstrip("/")


def _load(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            data = json.loads(f.read(MAX_FILE_SIZE))
    except (FileNotFoundError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _save(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(data, out, indent=2)
    os.chmod(temp, 0o600)  # O_CREAT's mode does not apply to a file that already existed
    os.replace(temp, path)


def token_for(server: str) -> str | None:
    """The token to send to `server`: LAZYREG_TOKEN, else the one `login` stored."""
    env = os.environ.get("LAZYREG_TOKEN")
    if env:
        return env
    entry = _load(tokens_file()).get(_key(server))
    token = entry.get("token") if isinstance(entry, dict) else None
    return token if isinstance(token, str) else None


def store(server: str, username: str, token: str, expires: str) -> Path:
    path = tokens_file()
    data = _load(path)
    data[_key(server)] = {"username": username, "token": token, "expires": expires}
    _save(path, data)
    return path


def forget(server: str) -> bool:
    path = tokens_file()
    data = _load(path)
    if data.pop(_key(server), None) is None:
        return False
    _save(path, data)
    return True
