"""`lazyreg`: the command line, a client of the REST API (and `lazyreg serve`, the server).

It talks to the server over HTTP with the standard library's urllib, and
imports nothing of the server but the shared `lazyreg.types`; `serve` alone
loads the server, when it runs. Every failure (an HTTP error with its
`detail`, an unreachable server, a bad argument) ends as one `error: ...` line
on stderr and a non-zero exit status, never a traceback; `-o json` prints
every answer as JSON for scripts.

Modules: `client` (REST and its errors), `render` (tables, records, JSON),
`options` (a resource's options from one dataclass), `context` (what each
command gets), one module per command group, `follow` (task progress),
`serve`, and `main` (the app and the entry point).
"""

from lazyreg.cli.main import main

__all__ = ["main"]
