"""The upstream's tag list, read a page at a time into what a sync needs.

Memory holds only the selected tags (include/exclude applied per page) and the
tags that may name referrers (`sha256-<hex>` and cosign's `.sig`/`.att`/`.sbom`),
never the whole list; more than `max_tags` tags listed fails the sync. Tags
that break the distribution-spec grammar are set aside, never requested.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from lazyreg.oci.names import is_tag
from lazyreg.oci.tagfilter import TagFilter
from lazyreg.upstream.client import UpstreamClient

# The OCI referrers tag schema and cosign's signature/attestation/SBOM tags.
REFERRER_TAG_RE = re.compile(r"sha256-[a-f0-9]{64}(?:\.(?:sig|att|sbom))?\Z")


class TooManyTags(Exception):
    """The upstream lists more tags than the remote's `max_tags`."""


@dataclass
class TagListing:
    selected: list[str] = field(default_factory=list)  # valid, after include/exclude
    pinned: list[str] = field(default_factory=list)  # digests of include_tags
    invalid: list[str] = field(default_factory=list)  # selected but not valid tag names
    referrer_tags: set[str] = field(default_factory=set)  # before include/exclude
    listed: int = 0


def describe_tag(value: object) -> str:
    """A tag (or a hostile list entry) short enough for a message."""
    text = value if isinstance(value, str) else repr(value)
    return repr(text[:100] + "…") if len(text) > 100 else repr(text)


async def list_tags(client: UpstreamClient, name: str, include: Sequence[str] | None,
                    exclude: Sequence[str] | None, max_tags: int,
                    keep_referrer_tags: bool) -> TagListing:
    listing = TagListing()
    selector = TagFilter.of(include, exclude)
    async for page in client.iter_tag_pages(name):
        listing.listed += len(page)
        if listing.listed > max_tags:
            raise TooManyTags(f"the upstream lists more than {max_tags} tags for {name}"
                              " (the remote's max_tags): raise max_tags to sync them")
        names = [t for t in page if isinstance(t, str)]
        listing.invalid.extend(describe_tag(t) for t in page if not isinstance(t, str))
        if keep_referrer_tags:
            listing.referrer_tags.update(t for t in names if REFERRER_TAG_RE.fullmatch(t))
        for tag in selector.select(names):
            if is_tag(tag):
                listing.selected.append(tag)
            else:
                listing.invalid.append(describe_tag(tag))
    # A tag listed on two pages is one tag.
    listing.selected = list(dict.fromkeys(listing.selected))
    listing.pinned = list(selector.pinned)
    return listing
