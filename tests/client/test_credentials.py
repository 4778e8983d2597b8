"""docker's config.json: auths, credsStore, credHelpers and the docker-credential-* protocol."""

from __future__ import annotations

import base64
import json
import stat
import sys
from pathlib import Path

import pytest

from pyreg.client.credentials import Credentials, DockerConfig, docker_config_dir
from pyreg.client.errors import CredentialsError

HELPER = f"""#!{sys.executable}
import json, sys
from pathlib import Path
db = Path(__file__).with_suffix(".json")
data = json.loads(db.read_text()) if db.exists() else {{}}
action, stdin = sys.argv[1], sys.stdin.read()
if action == "get":
    if stdin.strip() not in data:
        print("credentials not found in native keychain"); sys.exit(1)
    print(json.dumps(data[stdin.strip()]))
elif action == "store":
    doc = json.loads(stdin); data[doc["ServerURL"]] = doc; db.write_text(json.dumps(data))
elif action == "erase":
    if data.pop(stdin.strip(), None) is None:
        print("credentials not found in native keychain"); sys.exit(1)
    db.write_text(json.dumps(data))
"""


def make_helper(directory: Path, name: str) -> Path:
    path = directory / f"docker-credential-{name}"
    path.write_text(HELPER)
    path.chmod(0o755)
    return path


def test_config_dir_from_environment(tmp_path: Path) -> None:
    assert docker_config_dir({"DOCKER_CONFIG": str(tmp_path)}) == tmp_path
    assert docker_config_dir({"HOME": "/home/u"}) == Path("/home/u/.docker")


def test_auths_round_trip_mode_600_and_other_keys_kept(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"psFormat": "table", "auths": {}}))
    config = DockerConfig(tmp_path)
    config.store("127.0.0.1:5000", Credentials("u", "p:w"))
    config.store("docker.io", Credentials("hub", "secret"))
    doc = json.loads((tmp_path / "config.json").read_text())
    assert doc["psFormat"] == "table"
    assert base64.b64decode(doc["auths"]["127.0.0.1:5000"]["auth"]) == b"u:p:w"
    assert "https://index.docker.io/v1/" in doc["auths"]
    assert stat.S_IMODE((tmp_path / "config.json").stat().st_mode) == 0o600
    assert config.get("127.0.0.1:5000") == Credentials("u", "p:w")
    assert config.get("registry-1.docker.io") == Credentials("hub", "secret")
    assert config.erase("127.0.0.1:5000") and not config.erase("127.0.0.1:5000")
    assert config.get("127.0.0.1:5000") is None


def test_keys_with_scheme_and_identity_tokens(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"auths": {
        "https://reg.example:5000/v2/": {"auth": base64.b64encode(b"a:b").decode()},
        "tok.example": {"auth": base64.b64encode(b"a:").decode(), "identitytoken": "refresh"},
    }}))
    config = DockerConfig(tmp_path)
    assert config.get("reg.example:5000") == Credentials("a", "b")
    assert config.get("tok.example") == Credentials("a", "", "refresh")
    assert config.get("nowhere.example") is None


def test_creds_store_and_cred_helpers(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    make_helper(bin_dir, "store")
    make_helper(bin_dir, "special")
    (tmp_path / "config.json").write_text(json.dumps(
        {"credsStore": "store", "credHelpers": {"special.example": "special"}}))
    config = DockerConfig(tmp_path, helper_path=str(bin_dir))
    config.store("reg.example", Credentials("u", "pw"))
    config.store("special.example", Credentials(identity_token="idt"))
    doc = json.loads((tmp_path / "config.json").read_text())
    assert doc["auths"] == {"reg.example": {}, "special.example": {}}  # no secret in the file
    assert json.loads((bin_dir / "docker-credential-store.json").read_text())["reg.example"]["Secret"] == "pw"
    assert config.get("reg.example") == Credentials("u", "pw")
    assert config.get("special.example") == Credentials(identity_token="idt")
    assert config.get("other.example") is None  # "not found" is no login, not an error
    assert config.erase("reg.example")
    assert config.get("reg.example") is None


def test_missing_helper_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"credsStore": "absent"}))
    with pytest.raises(CredentialsError, match="docker-credential-absent is not installed"):
        DockerConfig(tmp_path, helper_path=str(tmp_path)).get("reg.example")


def test_erase_forgets_every_key_of_the_host(tmp_path: Path) -> None:
    auth = base64.b64encode(b"a:b").decode()
    (tmp_path / "config.json").write_text(json.dumps({"auths": {
        "https://reg.example:5000": {"auth": auth}, "http://reg.example:5000/v2/": {"auth": auth},
        "reg.example": {"auth": auth}}}))
    config = DockerConfig(tmp_path)
    assert config.get("reg.example:5000") == Credentials("a", "b")
    assert config.erase("reg.example:5000")  # what `get` finds, `erase` removes: logout logs out
    assert config.get("reg.example:5000") is None
    assert json.loads((tmp_path / "config.json").read_text())["auths"] == {"reg.example": {"auth": auth}}
    assert not config.erase("reg.example:5000")
