"""Every bound the management API puts on what a client sends.

A request outside these bounds is refused with a 4xx naming the field (or the
body), never accepted and never a 500. The HTTP-level bounds (header sizes,
time to send a request head, idle keep-alive) are set where the server starts,
in `lazyreg.serve`.
"""

from __future__ import annotations

# A request body: the largest API body is a remote with a CA bundle (Mozilla's
# is about 220 KB). /v2 is read-only and refuses any body.
MAX_BODY_BYTES = 1024 * 1024
# Time for a request body to arrive once its head has: the `body_timeout`
# setting (`lazyreg.bodies`), the same for every body.

# Integers a client names (offsets, version numbers): they must fit the
# smallest integer column of every supported database (PostgreSQL's int4).
MAX_INT = 2**31 - 1
# Digits read from an integer parameter before giving up on it.
MAX_INT_DIGITS = 32

# Page sizes: a larger `limit` is capped (as Django REST framework does).
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000

# Tag globs of a remote.
MAX_GLOBS = 100
MAX_GLOB_LENGTH = 255
# Free text and secrets.
MAX_DESCRIPTION_LENGTH = 4096
MAX_CREDENTIAL_LENGTH = 4096
