"""A remote's platform filter: which children of an index a sync fetches.

A listed platform is `os/architecture[/variant]`. Without a variant it takes
every variant of that os and architecture (`linux/arm64` takes `linux/arm64/v8`),
as `docker pull --platform` does; with one, only that variant.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lazyreg.oci import mediatypes as mt
from lazyreg.oci.manifest import ChildManifest, Platform


@dataclass(frozen=True)
class PlatformFilter:
    listed: tuple[tuple[str, str, str | None], ...] = ()  # (os, architecture, variant)

    @classmethod
    def of(cls, platforms: Sequence[str] | None) -> PlatformFilter:
        listed = []
        for text in platforms or ():
            parts = text.split("/")
            listed.append((parts[0], parts[1], parts[2] if len(parts) > 2 else None))
        return cls(tuple(listed))

    def matches(self, platform: Platform) -> bool:
        return any(platform.os == os_ and platform.architecture == arch
                   and (variant is None or platform.variant == variant)
                   for os_, arch, variant in self.listed)

    def fetches(self, child: ChildManifest) -> bool:
        """Whether a sync fetches this child now (else it is recorded, fetched on demand).

        Only image manifests with a platform are left: a nested index is followed,
        since the platforms it holds are known only from its own bytes.
        """
        if not self.listed or child.platform is None:
            return True
        if child.descriptor.media_type not in mt.IMAGE_MANIFESTS:
            return True
        return self.matches(child.platform)
