import time

import pytest

from lazyreg.oci.manifest import ChildManifest, Descriptor, Platform
from lazyreg.oci.platforms import PlatformFilter
from lazyreg.oci.tagfilter import BadPattern, TagFilter, compile_regex, regex_error

PIN = "sha256:" + "b" * 64


def test_a_regex_matches_the_whole_tag() -> None:
    tags = ["v1.2", "v1.23", "v1.2.3", "xv1.2", "v1.2-rc", "v10.1"]
    assert TagFilter.of([r"re:^v1\.[0-9]+$"], None).select(tags) == ["v1.2", "v1.23"]
    # Without anchors too: the whole tag, as a glob is.
    assert TagFilter.of([r"re:v1\.[0-9]+"], None).select(tags) == ["v1.2", "v1.23"]
    assert TagFilter.of(["v1.*"], [r"re:.*-rc"]).select(tags) == ["v1.2", "v1.23", "v1.2.3"]


def test_a_digest_pins_and_selects_no_tag() -> None:
    only_pin = TagFilter.of([PIN], None)
    assert only_pin.pinned == (PIN,)
    assert only_pin.select(["latest", "v1"]) == []
    both = TagFilter.of([PIN, "v*"], None)
    assert both.select(["latest", "v1"]) == ["v1"]


def test_a_catastrophic_pattern_is_linear() -> None:
    # (a+)+$ backtracks exponentially in Python's re on "aaa…a!"; RE2 does not backtrack.
    tags = ["a" * 127 + "!"] * 2000 + ["a" * 128]
    started = time.monotonic()
    assert TagFilter.of(["re:(a+)+$"], None).select(tags) == ["a" * 128]
    assert time.monotonic() - started < 1.0


def test_patterns_re2_refuses() -> None:
    assert regex_error(r"re:(a)\1") is not None
    assert regex_error("re:(?<=a)b") is not None
    assert regex_error("re:" + "x" * 300) is not None
    with pytest.raises(BadPattern):
        compile_regex("re:(")


def _child(os: str, arch: str, variant: str = "", media_type: str =
           "application/vnd.oci.image.manifest.v1+json") -> ChildManifest:
    return ChildManifest(Descriptor("sha256:" + "c" * 64, 10, media_type),
                         Platform(os, arch, variant))


def test_platform_filter() -> None:
    f = PlatformFilter.of(["linux/amd64", "linux/arm/v7"])
    assert f.fetches(_child("linux", "amd64"))
    assert f.fetches(_child("linux", "arm", "v7"))
    assert not f.fetches(_child("linux", "arm", "v6"))
    assert not f.fetches(_child("linux", "s390x"))
    # A nested index is followed: its platforms are known only from its own bytes.
    assert f.fetches(_child("linux", "s390x",
                            media_type="application/vnd.oci.image.index.v1+json"))
    assert PlatformFilter.of(["linux/arm64"]).fetches(_child("linux", "arm64", "v8"))
    assert PlatformFilter.of(None).fetches(_child("linux", "s390x"))
