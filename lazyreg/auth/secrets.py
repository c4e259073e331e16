"""Remote secrets encrypted at rest, and the key lazyreg signs its tokens with.

One master key gives both, through HKDF: the Fernet key that encrypts remote
passwords and proxy credentials, and the HMAC key of the JWTs. The master key
is `LAZYREG_SECRET_KEY` or, unset, a random key file created 0600 in the data
directory (atomically, so that two processes starting at once agree on it).
Servers that share a database must share the key.

A secret that does not decrypt raises `SecretUnavailable`, whose message says
which key was tried and what to do; nothing crashes.
"""

from __future__ import annotations

import base64
import functools
import logging
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from lazyreg.errors import SecretUnavailable

if TYPE_CHECKING:
    from cryptography.fernet import Fernet

log = logging.getLogger(__name__)

MIN_KEY_LENGTH = 32


def _derive(master: bytes, purpose: bytes) -> bytes:
    """HKDF-SHA256 of 32 bytes, no salt (`cryptography`'s). Imported at the first key
    derived, not at start-up: a server that neither decrypts a secret nor signs a token
    (auth off, no remote password) never loads `cryptography` (6 MiB of a worker)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=b"lazyreg " + purpose).derive(master)


@dataclass(frozen=True)
class SecretBox:
    master: bytes = field(repr=False)  # never in a log line or a traceback's locals
    source: str  # where the master key came from, for error messages

    @classmethod
    def from_master(cls, master: bytes, source: str) -> SecretBox:
        return cls(master, source)

    @functools.cached_property
    def fernet_key(self) -> bytes:
        return base64.urlsafe_b64encode(_derive(self.master, b"secrets"))

    @functools.cached_property
    def signing_key(self) -> bytes:
        return _derive(self.master, b"jwt")

    @functools.cached_property
    def fernet(self) -> Fernet:
        from cryptography.fernet import Fernet  # at the first secret, not at start-up

        return Fernet(self.fernet_key)

    def encrypt(self, plain: str) -> str:
        return self.fernet.encrypt(plain.encode()).decode()

    def decrypt(self, token: str, what: str) -> str:
        from cryptography.fernet import InvalidToken

        try:
            return self.fernet.decrypt(token.encode()).decode()
        except (InvalidToken, ValueError):
            raise SecretUnavailable(
                f"cannot decrypt {what}: it was encrypted with another secret key than the"
                f" one in use ({self.source}). Restore the key it was encrypted with (the"
                " data directory's secret.key file, or LAZYREG_SECRET_KEY), or set the"
                " secret again") from None

    def can_decrypt(self, token: str) -> bool:
        from cryptography.fernet import InvalidToken

        try:
            self.fernet.decrypt(token.encode())
        except (InvalidToken, ValueError):
            return False
        return True


def _read_or_create_key_file(path: Path) -> tuple[bytes, bool]:
    """The key file's bytes, creating it first if it does not exist; and whether it was."""
    try:
        data = path.read_bytes().strip()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(base64.urlsafe_b64encode(secrets.token_bytes(32)) + b"\n")
                out.flush()
                os.fsync(out.fileno())
            try:
                os.link(temp, path)  # fails if another process created it first
                created = True
            except FileExistsError:
                created = False
        finally:
            temp.unlink(missing_ok=True)
        return path.read_bytes().strip(), created
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("secret key file %s is readable by others (mode %o): chmod 600 it",
                    path, mode)
    return data, False


def load_secret_box(key: str | None, key_file: Path) -> SecretBox:
    """The box for `key` (LAZYREG_SECRET_KEY) if given, else for the key file."""
    if key is not None:
        if len(key) < MIN_KEY_LENGTH:
            raise ValueError(f"LAZYREG_SECRET_KEY must be at least {MIN_KEY_LENGTH} characters"
                             " (for instance `openssl rand -base64 32`)")
        return SecretBox.from_master(key.encode(), "LAZYREG_SECRET_KEY")
    data, created = _read_or_create_key_file(key_file)
    if len(data) < MIN_KEY_LENGTH:
        raise ValueError(f"secret key file {key_file} holds fewer than {MIN_KEY_LENGTH}"
                         " characters: restore it, or remove it to create a new key")
    if created:
        log.info("created secret key file %s (mode 600): keep it with the database", key_file)
    return SecretBox.from_master(data, f"key file {key_file}")
