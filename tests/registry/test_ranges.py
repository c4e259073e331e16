import pytest

from lazyreg.errors import RegistryError
from lazyreg.registry.ranges import parse_range


@pytest.mark.parametrize(("header", "expected"), [
    (None, None), ("", None), ("bytes=0-9", (0, 10)), ("bytes=5-", (5, 100)),
    ("bytes=-10", (90, 100)), ("bytes=90-500", (90, 100)), ("items=0-1", None),
    ("bytes=0-1,5-6", None), ("bytes=9-3", None),
])
def test_parse_range(header: str | None, expected: tuple[int, int] | None) -> None:
    assert parse_range(header, 100) == expected


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=200-300"])
def test_unsatisfiable_range_is_416(header: str) -> None:
    with pytest.raises(RegistryError) as info:
        parse_range(header, 100)
    assert info.value.status == 416
