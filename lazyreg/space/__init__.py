"""Disk space: the bounded cache, reclaim, orphan cleanup, and deleting stored blobs safely.

    SpaceKeeper       the background loop: usage written in batches, the cache kept under its bound
    reclaim           the refetchable layers of one repository
    cleanup_orphans   content and artifacts no version holds, past a protection time
    delete_blobs      row first, then file, under each blob's download lease
"""

from lazyreg.space.cache import SpaceKeeper
from lazyreg.space.deletion import Removed, delete_blobs
from lazyreg.space.orphans import cleanup_orphans
from lazyreg.space.reclaim import reclaim

__all__ = ["Removed", "SpaceKeeper", "cleanup_orphans", "delete_blobs", "reclaim"]
