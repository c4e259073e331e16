"""What a server does about access control when it starts.

- opens the secret box (LAZYREG_SECRET_KEY or the data directory's key file);
- with auth on, creates `admin` when there is no user yet, with
  LAZYREG_ADMIN_PASSWORD or a generated password printed once on stdout;
- says, once and clearly, when stored remote secrets do not decrypt with the
  key in use (the key file was lost or replaced): the server still starts,
  and what needs them fails with the same explanation.
"""

from __future__ import annotations

import logging

from sqlalchemy import select

from lazyreg.auth.passwords import generate_password
from lazyreg.auth.secrets import SecretBox, load_secret_box
from lazyreg.auth.users import ADMIN, bootstrap_admin
from lazyreg.config import Settings
from lazyreg.db.engine import Database
from lazyreg.db.models import Remote

log = logging.getLogger(__name__)


def open_secrets(settings: Settings) -> SecretBox:
    key = settings.secret_key.get_secret_value() if settings.secret_key else None
    return load_secret_box(key, settings.secret_key_file)


def bootstrap_users(settings: Settings, db: Database) -> None:
    if not settings.auth_enabled:
        return
    given = settings.admin_password.get_secret_value() if settings.admin_password else None
    password = given or generate_password()
    with db.write_session() as session:
        created = bootstrap_admin(session, password)
    if created and given:
        log.info("created the user %r with the password from LAZYREG_ADMIN_PASSWORD", ADMIN)
    elif created:
        # stdout, once: the operator needs it; nothing else ever shows it again.
        print(f"lazyreg: created the user {ADMIN!r} with the generated password: {password}\n"
              "lazyreg: it is shown only this once; change it with"
              f" `lazyreg user update {ADMIN} --password-stdin`", flush=True)


def report_undecryptable(db: Database, secrets: SecretBox) -> int:
    """How many remotes hold secrets the key cannot decrypt; logged as an error."""
    with db.read_session() as session:
        rows = session.execute(select(Remote.name, Remote.password_secret, Remote.proxy_secret)
                               .where((Remote.password_secret.is_not(None))
                                      | (Remote.proxy_secret.is_not(None)))).all()
    bad = [name for name, pw, proxy in rows
           if any(s is not None and not secrets.can_decrypt(s) for s in (pw, proxy))]
    if bad:
        log.error("cannot decrypt the stored secrets of %d remote(s) (%s) with the secret key"
                  " in use (%s): syncs and fetches through them will fail until the key they"
                  " were encrypted with is restored, or their passwords are set again",
                  len(bad), ", ".join(sorted(bad)[:10]), secrets.source)
    return len(bad)
