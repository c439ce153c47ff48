"""Real clients against a registry with authentication: docker (token flow), skopeo, containerd."""

from __future__ import annotations

import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bcrypt
import pytest

from tests.clients.image import TestImage
from tests.clients.notary import notary_scenario
from tests.clients.skopeo import Skopeo, skopeo_scenario
from tests.e2e.conftest import Server, require
from tests.e2e.conftest_containerd import containerd  # noqa: F401  (fixture)

USERS = {"alice": "alice-e2e-pw", "carol": "carol-e2e-pw"}


@pytest.fixture
def auth_registry(trustreg, tmp_path: Path) -> Callable[..., Server]:
    """`auth_registry(token=...)`: a server whose htpasswd (bcrypt) holds USERS; alice may pull,
    push and delete in `library`, `harness` and `pubtrust`, carol may only pull; only `pubtrust`
    is public."""
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text("".join(
        f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(5)).decode().replace('$2b$', '$2y$', 1)}\n"
        for u, p in USERS.items()))
    members = {"alice": ["pull", "push", "delete"], "carol": ["pull"]}

    def start(token: bool) -> Server:
        auth: dict[str, Any] = {"htpasswd": str(htpasswd)}
        if token:
            auth["token"] = {"issuer": "trustreg-e2e", "service": "trustreg-e2e", "expiry": 600}
        return trustreg({"auth": auth, "projects": {"library": {"members": members},
                                                   "harness": {"members": members},
                                                   "pubtrust": {"public": True, "members": members}},
                         "trust": {"keys": {"insecure_dev_passphrase": True}}})

    return start


def in_log(server: Server, text: str, timeout: float = 5) -> bool:
    """Whether `text` shows up in the server log (access lines are written just after the response)."""
    deadline = time.monotonic() + timeout
    while text not in server.log():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def creds(user: str) -> str:
    return f"{user}:{USERS[user]}"



def test_docker_login_push_pull_token(auth_registry, dockerd, test_image: Path) -> None:
    server = auth_registry(token=True)
    ref = f"{server.addr}/library/busybox:v1"
    dockerd.run("load", "-i", str(test_image / "docker-archive.tar"))
    dockerd.run("tag", "harness/test:v1", ref)
    try:
        denied = dockerd.run("push", ref, check=False)
        assert denied.returncode != 0 and "denied" in denied.stderr
        assert in_log(server, "POST /v2/library/busybox/blobs/uploads/ 401")
        wrong = _login(dockerd, server, "alice", "wrong-password")
        assert wrong.returncode != 0 and "unauthorized" in wrong.stderr.lower()
        _login(dockerd, server, "alice")
        push = dockerd.run("push", ref)
        digest = [w for w in push.stdout.split() if w.startswith("sha256:")][0]
        dockerd.run("rmi", ref)
        dockerd.run("pull", ref)
        dockerd.run("pull", f"{server.addr}/library/busybox@{digest}")
        # carol may pull but not push
        _login(dockerd, server, "carol")
        dockerd.run("rmi", ref)
        dockerd.run("pull", ref)
        dockerd.run("tag", ref, f"{server.addr}/library/busybox:carol")
        refused = dockerd.run("push", f"{server.addr}/library/busybox:carol", check=False)
        assert refused.returncode != 0 and "denied" in refused.stderr
        assert in_log(server, "PUT /v2/library/busybox/manifests/carol 403")  # known user, no push role
    finally:
        dockerd.run("logout", server.addr, check=False)
        dockerd.run("rmi", "-f", ref, f"{server.addr}/library/busybox:carol", check=False)
    assert in_log(server, "authentication failed for user 'alice'")
    assert "wrong-password" not in server.log()


def _login(dockerd, server: Server, user: str, password: str | None = None) -> subprocess.CompletedProcess:
    """`docker login` with the password on stdin; asserts success unless a password is given."""
    result = subprocess.run(
        ["docker", "login", "-u", user, "--password-stdin", server.addr], input=(password or USERS[user]) + "\n",
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "DOCKER_HOST": dockerd.host, "DOCKER_CONFIG": str(dockerd.root / "config")})
    if password is None:
        assert result.returncode == 0 and "Login Succeeded" in result.stdout, result.stdout + result.stderr
    return result


@pytest.mark.parametrize("token", [True, False], ids=["token", "basic"])
def test_skopeo_with_creds(auth_registry, skopeo, test_image: Path, image: TestImage, tmp_path: Path,
                          token: bool) -> None:
    require("skopeo")
    server = auth_registry(token=token)
    ref = f"docker://{server.addr}/library/busybox:v1"
    src = f"oci:{test_image}/oci:v1"
    refused = skopeo("copy", "--dest-tls-verify=false", src, ref, check=False)
    assert refused.returncode != 0 and ("authentication required" in refused.stderr or "401" in refused.stderr)
    refused = skopeo("copy", "--dest-tls-verify=false", "--dest-creds", creds("carol"), src, ref, check=False)
    assert refused.returncode != 0 and "denied" in refused.stderr.lower()
    skopeo("copy", "--dest-tls-verify=false", "--dest-creds", creds("alice"), src, ref)
    digest = skopeo("inspect", "--tls-verify=false", "--creds", creds("carol"), "--format", "{{.Digest}}",
                    ref).stdout.strip()
    env = (test_image / "digests.env").read_text()
    assert f"AMD64_MANIFEST={digest}" in env or f'AMD64_MANIFEST="{digest}"' in env
    anonymous = skopeo("inspect", "--tls-verify=false", ref, check=False)
    assert anonymous.returncode != 0
    if token:  # the whole skopeo scenario (push, pull, mount, multi-arch, delete) through the token flow
        alice = Skopeo(tmp_path / "alice", creds("alice"), server.addr)
        skopeo_scenario(alice, server.addr, image, "harness/skopeo", tmp_path / "scenario")


@pytest.mark.parametrize("token", [True, False], ids=["token", "basic"])
def test_containerd_pull_with_credentials(auth_registry, containerd, skopeo, test_image: Path,  # noqa: F811
                                          token: bool) -> None:
    require("skopeo")
    server = auth_registry(token=token)
    ref = f"{server.addr}/library/busybox:multi"
    skopeo("copy", "--all", "--dest-tls-verify=false", "--dest-creds", creds("alice"),
           f"oci:{test_image}/oci:multi", f"docker://{ref}")
    try:
        refused = containerd.ctr("images", "pull", "--plain-http", ref, check=False)
        out = (refused.stderr + refused.stdout).lower()
        assert refused.returncode != 0 and ("401" in out or "authoriz" in out)
        containerd.ctr("images", "pull", "--plain-http", "--user", creds("carol"), ref)
        listed = containerd.ctr("images", "ls", "-q").stdout.split()
        assert ref in listed
        env = (test_image / "digests.env").read_text()
        index = containerd.ctr("images", "ls").stdout
        assert any(line.startswith(ref) and line.split()[2] in env for line in index.splitlines())
    finally:
        containerd.ctr("images", "rm", ref, check=False)


def test_sighup_rereads_htpasswd(auth_registry, tmp_path: Path) -> None:
    """A new htpasswd user can log in after SIGHUP, without a restart."""
    import base64
    import signal

    server = auth_registry(token=False)

    def ping(user: str, password: str) -> int:
        auth = base64.b64encode(f"{user}:{password}".encode()).decode()
        req = urllib.request.Request(f"{server.url}/v2/", headers={"Authorization": f"Basic {auth}"})
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return resp.status
        except urllib.error.HTTPError as e:
            return e.code

    assert ping("dave", "dave-pw") == 401
    htpasswd = tmp_path / "htpasswd"
    hashed = bcrypt.hashpw(b"dave-pw", bcrypt.gensalt(5)).decode()
    htpasswd.write_text(htpasswd.read_text() + f"dave:{hashed}\n")
    server.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while ping("dave", "dave-pw") != 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ping("dave", "dave-pw") == 200
    assert ping("alice", USERS["alice"]) == 200


def notary_env(user: str | None) -> dict[str, str]:
    """The notary CLI reads credentials from NOTARY_AUTH (base64 user:password); passphrases are throwaway."""
    import base64

    env = {**os.environ, "NOTARY_ROOT_PASSPHRASE": "r-pass", "NOTARY_TARGETS_PASSPHRASE": "t-pass",
           "NOTARY_SNAPSHOT_PASSPHRASE": "s-pass"}
    env.pop("NOTARY_AUTH", None)
    if user:
        env["NOTARY_AUTH"] = base64.b64encode(creds(user).encode()).decode()
    return env


def test_notary_scenario_with_credentials(auth_registry, tmp_path: Path) -> None:
    """The whole notary CLI scenario, publishing as alice through the token flow.

    The project is public because the scenario's own metadata reads are anonymous, and because the
    notary CLI reads anonymously first (it retries a 401 with credentials only via a token).
    """
    require("notary")
    server = auth_registry(token=True)
    gun = f"{server.addr}/pubtrust/notary-e2e"
    env = notary_env("alice")
    notary_scenario(server.url, None, gun, tmp_path, {"NOTARY_AUTH": env["NOTARY_AUTH"]})
    assert in_log(server, f"POST /v2/{gun}/_trust/tuf/ 200")


def test_notary_cli_token_flow(auth_registry, tmp_path: Path) -> None:
    """notary asks tokens for `repository:<host:port>/<repo>` scopes: mapped to the repository's roles."""
    require("notary")
    server = auth_registry(token=True)
    gun = f"{server.addr}/library/notary-token"

    def notary(user: str | None, trust_dir: str, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["notary", "-s", server.url, "-d", str(tmp_path / trust_dir), *args],
                              capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
                              env=notary_env(user))

    anonymous = notary(None, "anon", "init", gun, "-p")
    assert anonymous.returncode != 0, anonymous.stdout + anonymous.stderr
    carol_init = notary("carol", "carol", "init", gun, "-p")
    assert carol_init.returncode != 0, carol_init.stdout + carol_init.stderr
    alice = notary("alice", "alice", "init", gun, "-p")
    assert alice.returncode == 0, alice.stdout + alice.stderr
    listed = notary("carol", "carol-reader", "list", gun)
    assert listed.returncode == 0 and "No targets" in listed.stdout + listed.stderr, listed.stdout + listed.stderr
    refused = notary(None, "anon-reader", "list", gun)
    assert refused.returncode != 0
    assert in_log(server, f"POST /v2/{gun}/_trust/tuf/ 200")
    # carol's init: a pull-only member may not make the server create a key (issue 15), so it stops there
    assert in_log(server, f"GET /v2/{gun}/_trust/tuf/timestamp.key 403")
