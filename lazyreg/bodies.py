"""Reading a request body: the one deadline and the one cap every body gets.

A body is read whole, within `deadline` seconds of the handler asking for it
and up to the application's `client_max_size` (`lazyreg.api.limits.MAX_BODY_BYTES`);
a body dripped slower than that is cut off (408) and one over the cap refused
(413), and either way the connection is closed rather than the rest of the
body waited for. aiohttp keeps what was read, so a handler that reads the body
again (`request.read()`, `request.post()`) gets it at once.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from lazyreg.errors import TooLarge, TooSlow


async def read_body(request: web.Request, deadline: float) -> bytes:
    limit = request.client_max_size
    if request.content_length is not None and request.content_length > limit:
        raise TooLarge(f"the request body is {request.content_length} bytes;"
                       f" at most {limit} are accepted")
    try:
        async with asyncio.timeout(deadline):
            return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise TooLarge(f"the request body is over {limit} bytes") from None
    except TimeoutError:
        raise TooSlow(f"the request body did not arrive within {deadline:g} s") from None
