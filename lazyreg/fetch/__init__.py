"""The lazy store: a decorator over storage with single flight, staging and verified commit.

    LazyStore   what /v2 asks for a blob: local first, then in flight, then upstream
    Fetcher     one download per blob, in this process and across processes (leases);
                `fetch` is also how sync stores a blob, `fetch_small` a batch of configs
    Growing     a blob on its way, as readers see it (a memory window, then the file);
                filled by a Leader (blocks.py, pipeline.py) or a follower
    Source      where a blob can be fetched
"""

from lazyreg.fetch.body import BlobBody, StoredBody
from lazyreg.fetch.fetcher import Fetcher
from lazyreg.fetch.growing import Growing, Phase
from lazyreg.fetch.lazystore import BlobRef, FetchedBody, LazyStore
from lazyreg.fetch.source import Source

__all__ = ["BlobBody", "BlobRef", "FetchedBody", "Fetcher", "Growing", "LazyStore", "Phase",
           "Source", "StoredBody"]
