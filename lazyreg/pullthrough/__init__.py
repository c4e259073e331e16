"""Pull-through distributions: a whole upstream registry served under one base path,
each repository and tag fetched on its first pull (see `service`)."""

from lazyreg.pullthrough.service import FetchRefused, PullThrough

__all__ = ["FetchRefused", "PullThrough"]
