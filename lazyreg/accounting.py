"""Upstream accounting: which request (or task) caused which upstream requests and bytes.

A leaf module: it imports nothing of lazyreg. Each /v2 and /api request, and
each task, runs with its own `Account` in the context variable ACCOUNT; work
it starts in the background (a lazy download, a prefetch, a pull-through
flight) is an asyncio task created in that context, so it keeps adding to the
same account: a download is charged to the request that caused it, not to the
requests that joined it. The upstream observer adds to the current account;
the request's log line and the task's progress say what it came to.

`distribution` labels the upstream metrics: a distribution's base path (`/`
for the empty one), set once a /v2 request's name resolved to a distribution,
so its values are bounded by the distributions, never by what clients ask.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass
class Account:
    requests: int = 0  # upstream HTTP requests (each retry counts)
    bytes: int = 0  # blob bytes received from upstreams
    distribution: str = ""  # "" outside any distribution (a sync, a task)


ACCOUNT: ContextVar[Account | None] = ContextVar("lazyreg_account", default=None)


def current() -> Account | None:
    return ACCOUNT.get()


def label_distribution(base_path: str) -> None:
    """The current request is served by the distribution at `base_path`."""
    account = ACCOUNT.get()
    if account is not None:
        account.distribution = base_path or "/"
