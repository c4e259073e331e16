from lazyreg.sync.filters import filter_tags

TAGS = ["v1", "v1.1", "v2", "latest", "3.19-alpine", "3.19"]


def test_no_globs_keep_everything() -> None:
    assert filter_tags(TAGS, None, None) == TAGS
    assert filter_tags(TAGS, [], []) == TAGS


def test_include_then_exclude() -> None:
    assert filter_tags(TAGS, ["v1*"], None) == ["v1", "v1.1"]
    assert filter_tags(TAGS, ["v*", "*-alpine"], ["v1.*"]) == ["v1", "v2", "3.19-alpine"]
    assert filter_tags(TAGS, None, ["*"]) == []
