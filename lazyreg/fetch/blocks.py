"""The memory a download receives into: fixed-size, page-aligned blocks, reused.

A download receives its blob into blocks of BLOCK bytes, block `k` holding the
blob's bytes `[k * BLOCK, (k + 1) * BLOCK)`, so that a block's bytes can go to
disk with O_DIRECT (aligned address, offset and length) and to clients straight
from memory. A block is in use while its download holds it or a reader is
sending from it (`pins`); it goes back to its `BlockPool` when neither does.

The pool keeps at most `keep` free blocks for the next download: fresh memory
must be faulted in page by page (on this kind of virtual machine each first
touch costs the host a fault too), so reusing a block is far cheaper than
mapping a new one. Blocks beyond `keep` are unmapped when freed.
"""

from __future__ import annotations

import mmap

BLOCK = 1024 * 1024
POOL_KEEP = 8  # free blocks kept for reuse: two downloads' windows (8 MiB)


class Block:
    def __init__(self, pool: BlockPool) -> None:
        self._pool = pool
        self._memory = mmap.mmap(-1, BLOCK)
        self.view = memoryview(self._memory)
        self.start = 0  # the blob offset of the block's first byte
        self.filled = 0  # bytes received into it
        self.pins = 0  # readers sending from it right now
        self.retired = True  # its download let go of it

    @property
    def end(self) -> int:
        """The blob offset just past the bytes received into it."""
        return self.start + self.filled

    def pin(self) -> None:
        self.pins += 1

    def unpin(self) -> None:
        self.pins -= 1
        if self.pins == 0 and self.retired:
            self._pool.give(self)

    def retire(self) -> None:
        """Its download is done with it: back to the pool once no reader sends from it."""
        if not self.retired:
            self.retired = True
            if self.pins == 0:
                self._pool.give(self)


class BlockPool:
    def __init__(self, keep: int = POOL_KEEP) -> None:
        self.keep = keep
        self._free: list[Block] = []
        self.in_use = 0

    def take(self, start: int) -> Block:
        """A block for the blob's bytes from `start` (a multiple of BLOCK)."""
        block = self._free.pop() if self._free else Block(self)
        block.start, block.filled, block.retired = start, 0, False
        self.in_use += 1
        return block

    def give(self, block: Block) -> None:
        self.in_use -= 1
        if len(self._free) < self.keep:
            self._free.append(block)
        # else: unmapped once nothing refers to it
