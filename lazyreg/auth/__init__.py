"""Access control: users and roles, passwords, tokens, and secrets kept encrypted.

Plain functions and small dataclasses; no aiohttp here. The middlewares that
apply these decisions are `lazyreg.api.access` and `lazyreg.registry.access`.
"""
