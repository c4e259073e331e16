"""Where the referrers of a manifest (signatures, SBOMs, attestations) are upstream.

The referrers API (`GET /v2/<name>/referrers/<digest>`) names them by digest.
Where the upstream has no such API, the OCI fallback tag `sha256-<hex>` (an
index of the referrers) does. cosign's `sha256-<hex>.sig`, `.att` and `.sbom`
tags are looked for either way, since cosign writes them whatever the registry
supports. Only tags the upstream listed are asked for: no guessing requests.
"""

from __future__ import annotations

from dataclasses import dataclass

from lazyreg.upstream.client import UpstreamClient

COSIGN_SUFFIXES = (".sig", ".att", ".sbom")


@dataclass(frozen=True)
class Found:
    digests: list[str]  # referrers named by the referrers API
    tags: list[str]  # fallback and cosign tags naming the subject


def tags_for(subject: str, listed: set[str], with_fallback: bool) -> list[str]:
    if not subject.startswith("sha256:"):
        return []  # the tag schema exists for sha256 only
    base = "sha256-" + subject.removeprefix("sha256:")
    candidates = ([base] if with_fallback else []) + [base + s for s in COSIGN_SUFFIXES]
    return [t for t in candidates if t in listed]


async def find_referrers(client: UpstreamClient, name: str, subject: str,
                         listed: set[str]) -> Found:
    api = await client.get_referrers(name, subject)
    digests = list(dict.fromkeys(c.descriptor.digest for c in api or ()))
    return Found(digests, tags_for(subject, listed, with_fallback=api is None))
