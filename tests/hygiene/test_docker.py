"""docker against a registry on S3 (moto) with redirects and an immutable `v*` rule: the re-push of
another image to `v1` is refused, the pull follows the 307s to S3."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

from tests import s3server


def test_docker_immutable_push_and_redirected_pull(trustreg, dockerd, moto_endpoint: str, test_image: Path,
                                                   tmp_path: Path) -> None:
    storage = {"s3": s3server.s3_config(moto_endpoint, s3server.create_bucket(moto_endpoint), redirect=True)}
    server = trustreg({"storage": storage, "trust": {"keys": {"insecure_dev_passphrase": True}},
                       "projects": {"secure": {"immutable_tags": ["v*"]}}})
    ref = f"{server.addr}/secure/busybox:v1"
    dockerd.run("load", "-i", str(test_image / "docker-archive.tar"))
    dockerd.run("tag", "harness/test:v1", ref)
    dockerd.run("push", ref)
    dockerd.run("push", ref)  # the same image again: nothing moves

    archive = tmp_path / "other.tar"  # another image, made without a build
    with tarfile.open(archive, "w") as tar:
        data = b"another image\n"
        info = tarfile.TarInfo("hello.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    dockerd.run("import", str(archive), ref)
    refused = dockerd.run("push", ref, check=False)
    assert refused.returncode != 0 and "immutable" in refused.stderr + refused.stdout, refused.stderr

    # a pull of content this daemon never had (the index's arm64 image) fetches its blobs from S3
    multi = f"{server.addr}/secure/multi:v1"
    subprocess.run(["skopeo", "copy", "--all", "--dest-tls-verify=false", f"oci:{test_image}/oci:multi",
                    f"docker://{multi}"], check=True, capture_output=True, timeout=300)
    dockerd.run("pull", "--platform", "linux/arm64", multi)
    inspect = dockerd.run("image", "inspect", "--format", "{{.Architecture}}", multi)
    assert inspect.stdout.strip() == "arm64", inspect.stdout
    redirected = [line for line in server.log().splitlines() if "GET /v2/secure/multi/blobs/sha256:" in line
                  and " 307 " in line]
    assert len(redirected) >= 2, server.log()[-3000:]
