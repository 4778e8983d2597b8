#!/usr/bin/env python3
"""The cost of token auth: manifest GET by tag, requests/s, with and without Docker token auth.

Both registries are pyreg on their own fresh filesystem roots; the second has `auth.token` with
the built-in token server. wrk sends the same token on every request (as clients do until it
expires), so the figure includes the signature check on first use and the verified-token cache
after that. Run from the repository root:

    python bench/bench_auth.py [--duration 5] [--repeat 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import bcrypt
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import RegistryServer, start_pyreg  # noqa: E402

REPO, TAG = "bench/auth", "v1"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
USER, PASSWORD = "bench", "bench-pw"


def token_yaml(base: Path) -> str:
    htpasswd = base / "htpasswd"
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    htpasswd.write_text(f"{USER}:{hashed}\n")
    return f"""auth:
  token:
    realm: http://realm.invalid/auth/token
    autoredirect: true
    service: pyreg-bench
    issuer: pyreg-bench
    server:
      htpasswd: {htpasswd}
      signingkey: {base / "signing.key"}
      expiration: 1h
      rules:
        - account: {USER}
          repository: "*"
          actions: ["*"]
"""


def token_for(server: RegistryServer) -> str | None:
    r = httpx.get(f"{server.url}/v2/")
    if r.status_code != 401:
        return None
    params = dict(re.findall(r'(\w+)="([^"]*)"', r.headers["www-authenticate"]))
    r = httpx.get(
        params["realm"],
        params={"service": params["service"], "scope": f"repository:{REPO}:pull,push"},
        auth=(USER, PASSWORD),
    )
    r.raise_for_status()
    return str(r.json()["token"])


def push_manifest(server: RegistryServer, token: str | None) -> None:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(base_url=server.url, headers=headers) as c:
        descriptors = []
        for data, media_type in ((b"{}", "application/vnd.oci.empty.v1+json"),
                                 (b"layer" * 100, "application/vnd.oci.image.layer.v1.tar")):
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            r = c.post(f"/v2/{REPO}/blobs/uploads/", params={"digest": digest}, content=data)
            r.raise_for_status()
            descriptors.append({"mediaType": media_type, "digest": digest, "size": len(data)})
        manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                               "config": descriptors[0], "layers": descriptors[1:]}).encode()
        r = c.put(f"/v2/{REPO}/manifests/{TAG}", content=manifest,
                  headers={"Content-Type": OCI_MANIFEST})
        r.raise_for_status()


def wrk(url: str, connections: int, duration: float, token: str | None) -> float:
    cmd = ["wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{duration:g}s",
           "-H", f"Accept: {OCI_MANIFEST}"]
    if token:
        cmd += ["-H", f"Authorization: Bearer {token}"]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True,
                         timeout=duration + 30).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"wrk saw errors:\n{out}")
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert m is not None, out
    return float(m.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk point")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("bench_auth: wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="pyreg-bench-auth-"))
    servers: dict[str, RegistryServer] = {}
    try:
        (work / "open").mkdir()
        (work / "token").mkdir()
        servers["no auth"] = start_pyreg(work / "open" / "data")
        servers["token auth"] = start_pyreg(work / "token" / "data", extra=token_yaml(work / "token"))
        tokens = {name: token_for(s) for name, s in servers.items()}
        for name, s in servers.items():
            push_manifest(s, tokens[name])
        best: dict[tuple[str, int], float] = {}
        for _ in range(args.repeat):
            for conns in (1, 16, 64):
                for name, s in servers.items():  # interleaved: background load hits both alike
                    url = f"{s.url}/v2/{REPO}/manifests/{TAG}"
                    rps = wrk(url, conns, args.duration, tokens[name])
                    best[name, conns] = max(best.get((name, conns), 0.0), rps)
        lines = [f"# Token auth cost: manifest GET by tag — {dt.datetime.now():%Y-%m-%d %H:%M}", "",
                 f"pyreg, 1 worker, filesystem; wrk {args.duration:g} s per point, best of "
                 f"{args.repeat}, the two servers interleaved.", "",
                 "| connections | no auth (req/s) | token auth (req/s) | cost |", "|---:|---:|---:|---:|"]
        for conns in (1, 16, 64):
            a, b = best["no auth", conns], best["token auth", conns]
            lines.append(f"| {conns} | {a:,.0f} | {b:,.0f} | {100 * (1 - b / a):.0f}% |")
        text = "\n".join(lines) + "\n"
        print(text)
        out = ROOT / "bench" / "results" / f"auth-{dt.datetime.now():%Y%m%d-%H%M%S}.md"
        out.write_text(text)
        return 0
    finally:
        for s in servers.values():
            s.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
