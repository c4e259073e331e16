"""Who a server process is, as other processes see it: `<hostname>-<pid>`.

One value names a process in leases, in task rows and in its staging area,
and one check says whether such a process is known to be gone: only a
process of this host can be seen to be dead. A process of another host is
judged by its caller (a lease by its expiry, a staging area by its age).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass


@dataclass(frozen=True)
class WorkerId:
    host: str
    pid: int

    @classmethod
    def current(cls) -> WorkerId:
        return cls(socket.gethostname(), os.getpid())

    @classmethod
    def parse(cls, text: str) -> WorkerId | None:
        """The worker a `<hostname>-<pid>` string names; None when it names none."""
        host, _, pid = text.rpartition("-")
        if not host or not pid.isdigit():
            return None
        return cls(host, int(pid))

    def __str__(self) -> str:
        return f"{self.host}-{self.pid}"

    @property
    def on_this_host(self) -> bool:
        return self.host == socket.gethostname()

    def known_dead(self) -> bool:
        """True only for a process of this host that no longer runs."""
        if not self.on_this_host:
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False  # it runs, as another user
        return False
