"""The project's packaging stays honest: every package folder is installed under pyreg.*."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOP = {"oci": "pyreg.oci", "registry": "pyreg.registry", "client": "pyreg.client", "runtime": "pyreg.runtime"}


def test_every_package_folder_is_listed_in_pyproject() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    assert config["package-dir"] == {v: k for k, v in TOP.items()}
    found = set()
    for folder, package in TOP.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join([package, *rel.parts]))
    assert found == listed


def test_packages_import_under_the_pyreg_namespace() -> None:
    import pyreg.client
    import pyreg.oci
    import pyreg.registry
    import pyreg.runtime

    for module in (pyreg.oci, pyreg.registry, pyreg.client, pyreg.runtime):
        assert module.__file__ is not None
        assert Path(module.__file__).parent.parent == ROOT
