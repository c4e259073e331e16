"""Failed logins, counted per client address and per account, answered with 429.

Every password check (Basic on the API, `/token`, the login form) asks
`admit` first and reports its outcome (`failed`, `succeeded`). A client
address gets FREE_FAILURES failures, an account ACCOUNT_FREE_FAILURES (from
all addresses together), then must wait before its next check: 1 s after the
last free one, doubling with each further
failure, at most `max_backoff` seconds. An attempt during the wait is refused
at once (`Throttled`: 429 with `Retry-After`), is not checked and does not
lengthen the wait. An attempt is charged as a failure when it is admitted to
its check (where at most MAX_CONCURRENT_VERIFICATIONS run at once,
`lazyreg.auth.service`) and refunded when it succeeds, so that 32 guesses
sent at once get FREE_FAILURES checks, not 32, while 32 right passwords sent
at once all pass. A success clears its address's failures (not its account's).
Failures are forgotten FORGET seconds after the last one.

Accounts count per name, whether or not the account exists, so that a 429 does
not tell which names exist; an unknown user and a wrong password cost the same
(the password is hashed either way, `lazyreg.auth.passwords`). IPv6 clients
count per /64, which one host usually holds whole.

A real user cannot be locked out by someone else for longer than
`max_backoff` at a time: an address that logged in as an account in the last
KNOWN_FOR seconds is not refused for that account's failures (only for its
own address's), and any refusal ends after at most `max_backoff`.

Bounded: each table keeps at most MAX_ENTRIES keys, the least recently
touched dropped first. The tables are this process's: with several server
processes, each counts its own (an attacker spread over N processes gets N
times the attempts).

The client address comes from the request being handled (`CLIENT`, set by
the application's middleware), so that every path that checks a password is
throttled without passing it along.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass

from lazyreg.errors import ApiError

log = logging.getLogger("lazyreg.auth")

FREE_FAILURES = 5  # per client address
ACCOUNT_FREE_FAILURES = 10  # per account, from all addresses together
FIRST_BACKOFF = 1.0  # seconds, doubled with each failure past the free ones
FORGET = 900.0  # seconds after its last failure a key starts afresh
KNOWN_FOR = 86400.0  # seconds an address that logged in as an account stays known for it
MAX_ENTRIES = 10_000  # keys per table
MAX_SHOWN_NAME = 64  # characters of a username in a log line

CLIENT: ContextVar[str | None] = ContextVar("lazyreg_login_client", default=None)


class Throttled(ApiError):
    """Too many failed logins: 429, and how long to wait."""

    status = 429

    def __init__(self, retry_after: float) -> None:
        self.retry_after = max(1, math.ceil(retry_after))
        super().__init__(f"too many failed logins: try again in {self.retry_after} s")
        self.headers = {"Retry-After": str(self.retry_after)}


@dataclass
class _Count:
    failures: int = 0
    last: float = 0.0  # when the last failure was charged
    until: float = 0.0  # no check before this time


class _Table:
    """Keys to counts, at most MAX_ENTRIES of them, least recently touched dropped first."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self.rows: OrderedDict[str, _Count] = OrderedDict()

    def get(self, key: str, now: float) -> _Count:
        row = self.rows.get(key)
        if row is None or (now - row.last > FORGET and now >= row.until):
            row = self.rows[key] = _Count()
        self.rows.move_to_end(key)
        while len(self.rows) > self.max_entries:
            self.rows.popitem(last=False)
        return row

    def clear(self, key: str) -> None:
        self.rows.pop(key, None)


def address_key(address: str | None) -> str:
    """What a client address counts as: itself, or its /64 for IPv6."""
    if not address:
        return "-"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is None:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip.ipv4_mapped or ip) if isinstance(ip, ipaddress.IPv6Address) else str(ip)


class LoginThrottle:
    def __init__(self, max_backoff: float, *, max_entries: int = MAX_ENTRIES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_backoff = max_backoff
        self.clock = clock
        self.addresses = _Table(max_entries)
        self.accounts = _Table(max_entries)
        self.known: OrderedDict[tuple[str, str], float] = OrderedDict()
        self.max_known = max_entries

    def backoff(self, failures: int, free: int) -> float:
        """Seconds to wait after `failures` failures in a row, `free` of them free."""
        if failures < free:
            return 0.0
        return min(self.max_backoff, FIRST_BACKOFF * 2.0 ** min(failures - free, 32))

    def _is_known(self, address: str, account: str, now: float) -> bool:
        since = self.known.get((address, account))
        return since is not None and now - since < KNOWN_FOR

    def admit(self, account: str, *, charge: bool = True) -> None:
        """Charge an attempt to log in as `account` from the current client, or refuse it
        (`charge=False`: only refuse, for a look before waiting for a check slot)."""
        now = self.clock()
        address = address_key(CLIENT.get())
        by_address = self.addresses.get(address, now)
        by_account = self.accounts.get(account, now)
        wait = by_address.until - now
        if not self._is_known(address, account, now):
            wait = max(wait, by_account.until - now)
        if wait > 0:
            log.warning("login refused for %r from %s: too many failed logins, retry in"
                        " %.0f s", account[:MAX_SHOWN_NAME], address, math.ceil(wait))
            raise Throttled(wait)
        if not charge:
            return
        for row, free in ((by_address, FREE_FAILURES), (by_account, ACCOUNT_FREE_FAILURES)):
            row.failures += 1
            row.last = now
            row.until = now + self.backoff(row.failures, free)

    def failed(self, account: str) -> None:
        """The attempt `admit` charged did fail: one log line."""
        address = address_key(CLIENT.get())
        now = self.clock()
        failures = self.addresses.get(address, now).failures
        log.warning("login failed for %r from %s (%d failures in a row from this address,"
                    " %d for this account)", account[:MAX_SHOWN_NAME], address, failures,
                    self.accounts.get(account, now).failures)

    def refund(self, account: str) -> None:
        """The attempt `admit` charged was never checked (the check itself failed)."""
        address = address_key(CLIENT.get())
        now = self.clock()
        for row, free in ((self.addresses.get(address, now), FREE_FAILURES),
                          (self.accounts.get(account, now), ACCOUNT_FREE_FAILURES)):
            row.failures = max(0, row.failures - 1)
            row.until = row.last + self.backoff(row.failures, free) if row.failures else 0.0

    def succeeded(self, account: str) -> None:
        """The attempt succeeded: its address starts afresh and is known for the account.
        The account's count keeps the failures from elsewhere (only this attempt's charge
        is given back): a spread attack must not start afresh whenever its user logs in."""
        address = address_key(CLIENT.get())
        now = self.clock()
        self.addresses.clear(address)
        row = self.accounts.get(account, now)
        row.failures = max(0, row.failures - 1)
        row.until = row.last + self.backoff(row.failures, ACCOUNT_FREE_FAILURES)
        self.known[(address, account)] = self.clock()
        self.known.move_to_end((address, account))
        while len(self.known) > self.max_known:
            self.known.popitem(last=False)
