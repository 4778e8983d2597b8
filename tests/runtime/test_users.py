"""User resolution against an image's /etc/passwd and /etc/group (runc's rules)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyreg.runtime import UserError
from pyreg.runtime.users import Credentials, resolve_user


@pytest.fixture
def etc(tmp_path: Path) -> Path:
    (tmp_path / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n"
                                     "app:x:1000:1000::/home/app:/bin/sh\n# comment\n")
    (tmp_path / "group").write_text("root:x:0:\nwheel:x:10:app,other\napp:x:1000:\naudio:x:29:app\n")
    return tmp_path


@pytest.mark.parametrize(("spec", "expected"), [
    ("", Credentials(0, 0, (0,), "/root", "root")),
    ("app", Credentials(1000, 1000, (1000, 10, 29), "/home/app", "app")),
    ("1000", Credentials(1000, 1000, (1000, 10, 29), "/home/app", "app")),
    ("app:audio", Credentials(1000, 29, (29,), "/home/app", "app")),
    ("app:4242", Credentials(1000, 4242, (4242,), "/home/app", "app")),
    ("4242", Credentials(4242, 0, (0,), "/", None)),
    ("4242:4343", Credentials(4242, 4343, (4343,), "/", None)),
])
def test_resolution(etc: Path, spec: str, expected: Credentials) -> None:
    assert resolve_user(spec, etc) == expected


@pytest.mark.parametrize("spec", ["nobody", "app:nogroup", ":1"])
def test_unknown_names_are_errors(etc: Path, spec: str) -> None:
    with pytest.raises(UserError):
        resolve_user(spec, etc)


def test_an_image_without_etc(tmp_path: Path) -> None:
    assert resolve_user("12:34", tmp_path) == Credentials(12, 34, (34,), "/", None)
    with pytest.raises(UserError):
        resolve_user("app", tmp_path)
