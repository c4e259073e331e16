"""The cluster: the internal endpoint from which the other servers read this one's downloads.

    start_internal   the internal listener (`cluster_listen`), apart from the public port
    endpoint         its two routes: a blob's bytes (with Range) and its progress
"""

from lazyreg.cluster.listener import InternalListener, start_internal

__all__ = ["InternalListener", "start_internal"]
