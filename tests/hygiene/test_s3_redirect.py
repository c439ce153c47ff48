"""S3 redirects (moto server on loopback): blob GETs answer 307 to a presigned URL signed for
`redirect_endpoint`, which real skopeo follows; HEAD and ranges behave as before."""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from tests import s3server
from tests.clients.skopeo import Skopeo
from tests.e2e.conftest import require


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return None


def fetch(url: str, method: str = "GET", data: bytes | None = None,
          headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    opener = urllib.request.build_opener(NoRedirect)
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with opener.open(request, timeout=60) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_blob_get_redirects_to_the_endpoint(trustreg, moto_endpoint: str, test_image: Path, tmp_path: Path) -> None:
    require("skopeo")
    bucket = s3server.create_bucket(moto_endpoint)
    public = moto_endpoint.replace("127.0.0.1", "localhost")  # another name for the same S3: what clients see
    storage = {"s3": s3server.s3_config(moto_endpoint, bucket, redirect=True, redirect_endpoint=public,
                                        redirect_expiry=300)}
    server = trustreg({"storage": storage})
    data = os.urandom(300_000)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    assert fetch(f"{server.url}/v2/lib/app/blobs/uploads/?digest={digest}", "POST", data)[0] == 201

    status, headers, _ = fetch(f"{server.url}/v2/lib/app/blobs/{digest}")
    assert status == 307, status
    location = headers["Location"]
    assert location.startswith(f"{public}/{bucket}/") and "X-Amz-Expires=300" in location, location
    assert headers["Docker-Content-Digest"] == digest
    status, _, body = fetch(location)
    assert status == 200 and body == data
    status, _, part = fetch(location, headers={"Range": "bytes=1000-1999"})  # ranges: S3 answers them
    assert status == 206 and part == data[1000:2000]
    status, headers, body = fetch(f"{server.url}/v2/lib/app/blobs/{digest}", "HEAD")  # HEAD: answered here
    assert status == 200 and headers["Content-Length"] == str(len(data)) and body == b""
    status, _, _ = fetch(f"{server.url}/v2/lib/app/blobs/{digest}", headers={"Range": "bytes=400000-"})
    assert status == 416  # an unsatisfiable range is still refused by the registry

    # skopeo pushes, then pulls following the redirects: the layer bytes come from "S3"
    skopeo = Skopeo(tmp_path / "skopeo")
    skopeo("copy", "--dest-tls-verify=false", f"oci:{test_image}/oci:v1", f"docker://{server.addr}/lib/img:v1")
    out = tmp_path / "pulled"
    skopeo("copy", "--src-tls-verify=false", f"docker://{server.addr}/lib/img:v1", f"dir:{out}")
    compared = 0
    for blob in (test_image / "oci" / "blobs" / "sha256").iterdir():
        pulled = out / blob.name
        if pulled.exists():
            assert pulled.read_bytes() == blob.read_bytes()
            compared += 1
    assert compared >= 2, sorted(p.name for p in out.iterdir())  # config and layers
    redirected = [line for line in server.log().splitlines() if "/v2/lib/img/blobs/sha256:" in line and " 307 " in line]
    assert len(redirected) >= 2, server.log()[-3000:]  # config and layer
    assert urlsplit(public).hostname == "localhost"
