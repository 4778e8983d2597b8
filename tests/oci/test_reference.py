from __future__ import annotations

import pytest

from pyreg.oci.reference import ReferenceError, check_name, check_tag, is_valid_name, is_valid_tag


@pytest.mark.parametrize(
    "name",
    ["a", "library/busybox", "a/b/c/d", "my-org/my_app", "a__b", "a.b-c", "x---y", "0/1", "a" * 255],
)
def test_valid_names(name: str) -> None:
    assert is_valid_name(name)
    assert check_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["", "A", "a/B", "../x", "a/../b", "a//b", "a/", "/a", "-a", "a-", "a___b", "a..b", "a" * 256,
     "a b", "a\x00", ".", "_a"],
)
def test_invalid_names(name: str) -> None:
    assert not is_valid_name(name)
    with pytest.raises(ReferenceError):
        check_name(name)


@pytest.mark.parametrize("tag", ["latest", "v1.0", "1", "_x", "A-b.c_d", "a" * 128])
def test_valid_tags(tag: str) -> None:
    assert is_valid_tag(tag)
    assert check_tag(tag) == tag


@pytest.mark.parametrize("tag", ["", "-x", ".x", "a" * 129, "a/b", "a:b", "..", "a b"])
def test_invalid_tags(tag: str) -> None:
    assert not is_valid_tag(tag)
    with pytest.raises(ReferenceError):
        check_tag(tag)
