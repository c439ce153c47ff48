"""Fixtures for the auth tests: a bcrypt htpasswd file (cheap cost) and configurations using it."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import bcrypt
import pytest

PASSWORDS = {"alice": "alice-pw", "carol": "carol-pw", "root": "root-pw", "stranger": "stranger-pw"}
SERVICE = "trustreg-test"


def htpasswd_line(user: str, password: str, prefix: bytes = b"$2y$") -> str:
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).replace(b"$2b$", prefix)
    return f"{user}:{hashed.decode()}\n"


def write_htpasswd(path: Path, users: dict[str, str]) -> Path:
    path.write_text("# test users\n" + "".join(htpasswd_line(u, p) for u, p in users.items()))
    return path


def basic(user: str, password: str | None = None) -> dict[str, str]:
    password = PASSWORDS[user] if password is None else password
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def htpasswd_file(tmp_path: Path) -> Path:
    return write_htpasswd(tmp_path / "htpasswd", PASSWORDS)


def auth_config(htpasswd_file: Path, token: bool = False, **token_extra: Any) -> dict[str, Any]:
    """alice: pull+push+delete on `secure`; carol: pull only on `secure`; `pub` is public; root is admin."""
    auth: dict[str, Any] = {"htpasswd": str(htpasswd_file), "admins": ["root"]}
    if token:
        auth["token"] = {"issuer": "trustreg-test-issuer", "service": SERVICE, "expiry": 300, **token_extra}
    return {
        "auth": auth,
        "projects": {
            "secure": {"members": {"alice": ["pull", "push", "delete"], "carol": ["pull"]}},
            "pub": {"public": True, "members": {"alice": ["pull", "push"]}},
        },
        "default_project": {"members": {}},
        "trust": {"keys": {"insecure_dev_passphrase": True}},
    }


async def push_image(client: Any, name: str, headers: dict[str, str], tag: str = "1.0") -> str:
    """Push a one-layer image with `headers`; returns the manifest digest (asserts each step)."""
    from tests.helpers import OCI_MANIFEST, digest_of, image_manifest

    config, layer = f'{{"repo":"{name}"}}'.encode(), f"layer of {name}".encode()
    for blob in (config, layer):
        resp = await client.post(f"/v2/{name}/blobs/uploads/?digest={digest_of(blob)}", data=blob, headers=headers)
        assert resp.status == 201, await resp.text()
    manifest = image_manifest(config, [layer])
    resp = await client.put(f"/v2/{name}/manifests/{tag}", data=manifest,
                            headers={**headers, "Content-Type": OCI_MANIFEST})
    assert resp.status == 201, await resp.text()
    return digest_of(manifest)
