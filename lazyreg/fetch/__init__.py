"""Fetching blobs from upstreams into storage: one download per blob, readers join it.

Used by the /v2 lazy path (clients stream the download as it grows) and by
sync (config blobs, and every blob with the `immediate` policy).
"""

from lazyreg.fetch.download import Download, Source
from lazyreg.fetch.fetcher import Fetcher

__all__ = ["Download", "Fetcher", "Source"]
