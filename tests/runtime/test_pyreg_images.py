"""Images that containers use (as root): `rmi` refuses them as docker does, `-f` untags but keeps
what the container needs, and no prune removes them."""

from __future__ import annotations

import json

from tests.client.cli import Pyreg
from tests.runtime.conftest import wait_for


def _image_id(pyreg: Pyreg, name: str) -> str:
    return str(json.loads(pyreg("inspect", name).out)[0]["Id"])


def test_rmi_refuses_an_image_a_stopped_container_uses(pyreg: Pyreg) -> None:
    created = pyreg("create", "--name", "user", "bb", "echo", "still runs")
    assert created.code == 0, created.err
    cid, image_id = created.out.strip(), _image_id(pyreg, "bb")
    refused = pyreg("rmi", "bb")
    assert refused.code == 1
    assert refused.err == (
        'Error response from daemon: conflict: unable to remove repository reference "bb" (must '
        f"force) - container {cid[:12]} is using its referenced image {image_id[7:19]}\n")
    by_id = pyreg("rmi", image_id[7:19])
    assert by_id.code == 1 and by_id.err == (
        f"Error response from daemon: conflict: unable to delete {image_id[7:19]} (must be forced)"
        f" - image is being used by stopped container {cid[:12]}\n")
    # Another name of the same image may go: the image keeps one.
    assert pyreg("tag", "bb", "bb:two").code == 0
    assert pyreg("rmi", "bb:two").out == "Untagged: bb:two\n"
    for prune in (("image", "prune", "-f"), ("image", "prune", "-a", "-f")):
        assert pyreg(*prune).out == "Total reclaimed space: 0B\n"
    assert _image_id(pyreg, "bb") == image_id
    # -f untags; the image stays, without a name, as long as the container does.
    forced = pyreg("rmi", "-f", "bb")
    assert (forced.code, forced.out) == (0, "Untagged: bb:latest\n"), forced.err
    assert pyreg("run", "--rm", "--pull", "never", "bb", "true").code == 125
    assert pyreg("images", "-q").out.split() == [image_id[7:19]]
    assert pyreg("image", "prune", "-a", "-f").out == "Total reclaimed space: 0B\n"
    assert pyreg("start", "-a", "user").out == "still runs\n"
    assert pyreg("rm", "user").code == 0
    pruned = pyreg("image", "prune", "-f")
    assert "deleted: " in pruned.out and pyreg("images", "-q").out == ""


def test_a_running_container_keeps_its_image_through_system_prune(pyreg: Pyreg) -> None:
    started = pyreg("run", "-d", "bb", "sleep", "60")
    assert started.code == 0, started.err
    cid, image_id = started.out.strip(), _image_id(pyreg, "bb")
    refused = pyreg("rmi", "-f", image_id[7:19])
    assert refused.code == 1 and refused.err == (
        f"Error response from daemon: conflict: unable to delete {image_id[7:19]} (cannot be "
        f"forced) - image is being used by running container {cid[:12]}\n")
    pruned = pyreg("system", "prune", "-a", "-f")
    assert pruned.code == 0 and "Deleted Images:" not in pruned.out, pruned.out
    assert _image_id(pyreg, "bb") == image_id
    assert pyreg("rm", "-f", cid).code == 0
    wait_for(lambda: pyreg("ps", "-a", "-q").out == "")
    assert "Deleted Images:" in pyreg("system", "prune", "-a", "-f").out
