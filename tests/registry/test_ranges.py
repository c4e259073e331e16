"""The Range table of `lazyreg.registry.ranges`, row by row."""

import pytest

from lazyreg.errors import RegistryError
from lazyreg.registry.ranges import parse_range

HUGE = "9" * 5000  # past Python's int() limit of 4300 digits


@pytest.mark.parametrize(("header", "expected"), [
    (None, None), ("", None),
    ("bytes=0-9", (0, 10)), ("bytes=5-", (5, 100)), ("bytes=-10", (90, 100)),
    ("bytes=90-500", (90, 100)), ("bytes=-500", (0, 100)), ("bytes=99-99", (99, 100)),
    (f"bytes=0-{HUGE}", (0, 100)), (f"bytes=-{HUGE}", (0, 100)),
    ("bytes=" + "0" * 5000 + "5-", (5, 100)),  # leading zeros are still five
    (" bytes=0-9 ", (0, 10)),
    # not served partially: the whole blob
    ("items=0-1", None), ("bytes=0-1,5-6", None), ("bytes=9-3", None), ("bytes=-", None),
    ("bytes=a-b", None), ("bytes 0-9", None), ("bytes=٣-٩", None),  # not ASCII digits
])
def test_parse_range(header: str | None, expected: tuple[int, int] | None) -> None:
    assert parse_range(header, 100) == expected


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=200-300", "bytes=-0",
                                    f"bytes={HUGE}-", f"bytes={HUGE}-{HUGE}"])
def test_unsatisfiable_range_is_416(header: str) -> None:
    with pytest.raises(RegistryError) as info:
        parse_range(header, 100)
    assert (info.value.status, info.value.code) == (416, "RANGE_INVALID")
    assert len(info.value.message) < 200


def test_if_range_other_than_the_etag_gets_the_whole_blob() -> None:
    etag = '"sha256:' + "a" * 64 + '"'
    assert parse_range("bytes=0-9", 100, etag, etag) == (0, 10)
    assert parse_range("bytes=0-9", 100, '"sha256:other"', etag) is None
