"""A small, reproducible test image, written with no network access.

`make_test_image(out)` writes under `out`:

- `oci/`: an OCI image layout with refs `v1` (linux/amd64: static busybox from Debian's
  `busybox-static` plus /etc/harness-test, two layers), `v1-arm64` (marker file only, not runnable)
  and `multi` (an OCI index of the two);
- `docker-archive.tar`: `oci:v1` in `docker save` format, tagged `harness/test:v1` (dockerd 20.10
  cannot load an OCI layout; made with skopeo);
- `digests.env`: AMD64_MANIFEST, ARM64_MANIFEST, INDEX_DIGEST, AMD64_CONFIG, AMD64_MARKER,
  DOCKER_ARCHIVE_REF as shell-style assignments.

All tar/gzip metadata is fixed (mtime 0, uid/gid 0), so the digests change only with Debian's busybox.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

BUSYBOX = Path("/bin/busybox")
MARKER = "harness-test-image v1 amd64"
DOCKER_ARCHIVE_REF = "harness/test:v1"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"

Entry = tuple[str, str, bytes | str | None, int]  # (name, "dir"|"file"|"symlink", payload, mode)


@dataclass(frozen=True)
class TestImage:
    """What `make_test_image` wrote (digests as `sha256:<hex>`)."""

    __test__ = False  # not a pytest test class

    dir: Path
    amd64_manifest: str
    arm64_manifest: str
    index: str
    amd64_config: str

    @property
    def layout(self) -> Path:
        return self.dir / "oci"

    def oci(self, ref: str) -> str:
        """The skopeo/containers transport reference of a ref in the layout."""
        return f"oci:{self.layout}:{ref}"

    def size(self, digest: str) -> int:
        return (self.layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).stat().st_size


def _tar(entries: list[Entry]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, payload, mode in entries:
            info = tarfile.TarInfo(name)
            info.mtime, info.uid, info.gid, info.uname, info.gname, info.mode = 0, 0, 0, "root", "root", mode
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, str(payload)
                tar.addfile(info)
            else:
                assert isinstance(payload, bytes)
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


def _gzip(data: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, compresslevel=6) as gz:
        gz.write(data)
    return buf.getvalue()


class _Layout:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs" / "sha256"
        self.blobs.mkdir(parents=True)

    def put(self, data: bytes) -> str:
        hexdigest = hashlib.sha256(data).hexdigest()
        (self.blobs / hexdigest).write_bytes(data)
        return f"sha256:{hexdigest}"

    def image(self, arch: str, layers: list[list[Entry]], label: str) -> dict:
        """Store an image's layers, config and manifest; return the manifest's descriptor."""
        descriptors, diff_ids = [], []
        for entries in layers:
            raw = _tar(entries)
            diff_ids.append(f"sha256:{hashlib.sha256(raw).hexdigest()}")
            compressed = _gzip(raw)
            descriptors.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                "digest": self.put(compressed), "size": len(compressed)})
        config = {
            "created": "1970-01-01T00:00:00Z", "architecture": arch, "os": "linux",
            "config": {"Env": ["PATH=/bin:/usr/bin"], "Cmd": ["/bin/cat", "/etc/harness-test"], "WorkingDir": "/",
                       "Labels": {"org.example.harness": label}},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created": "1970-01-01T00:00:00Z", "created_by": f"test image layer {i}"}
                        for i in range(len(diff_ids))],
        }
        config_bytes = _canonical(config)
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                               "digest": self.put(config_bytes), "size": len(config_bytes)},
                    "layers": descriptors}
        body = _canonical(manifest)
        return {"mediaType": OCI_MANIFEST, "digest": self.put(body), "size": len(body),
                "platform": {"architecture": arch, "os": "linux"}}


def _canonical(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _ref(descriptor: dict, name: str) -> dict:
    ref = {k: v for k, v in descriptor.items() if k != "platform"}
    return {**ref, "annotations": {"org.opencontainers.image.ref.name": name}}


def make_test_image(out: Path) -> TestImage:
    """Write the layout, the docker archive and digests.env under `out` (see the module docstring)."""
    if shutil.which("skopeo") is None or not BUSYBOX.exists():
        raise RuntimeError("the test image needs skopeo and a static /bin/busybox (Debian busybox-static)")
    shutil.rmtree(out / "oci", ignore_errors=True)
    layout = _Layout(out / "oci")
    base: list[Entry] = [("bin", "dir", None, 0o755), ("bin/busybox", "file", BUSYBOX.read_bytes(), 0o755)]
    base += [(f"bin/{applet}", "symlink", "busybox", 0o777)
             for applet in ("sh", "cat", "echo", "ls", "true", "sleep", "uname")]
    base += [("etc", "dir", None, 0o755), ("tmp", "dir", None, 0o1777),
             ("etc/passwd", "file", b"root:x:0:0:root:/root:/bin/sh\n", 0o644),
             ("etc/group", "file", b"root:x:0:\n", 0o644)]
    top: list[Entry] = [("etc", "dir", None, 0o755), ("etc/harness-test", "file", f"{MARKER}\n".encode(), 0o644)]
    amd64 = layout.image("amd64", [base, top], "v1-amd64")
    arm_files: list[Entry] = [("etc", "dir", None, 0o755),
                              ("etc/harness-test", "file", b"harness-test-image v1 arm64 (not runnable)\n", 0o644)]
    arm64 = layout.image("arm64", [arm_files], "v1-arm64")
    index_body = _canonical({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [amd64, arm64]})
    index = {"mediaType": OCI_INDEX, "digest": layout.put(index_body), "size": len(index_body)}
    top_index = {"schemaVersion": 2, "manifests": [_ref(amd64, "v1"), _ref(arm64, "v1-arm64"), _ref(index, "multi")]}
    (layout.root / "index.json").write_text(json.dumps(top_index, indent=1))
    (layout.root / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))

    image = TestImage(out, amd64["digest"], arm64["digest"], index["digest"],
                      json.loads((layout.blobs / amd64["digest"][7:]).read_bytes())["config"]["digest"])
    archive = out / "docker-archive.tar"
    archive.unlink(missing_ok=True)
    subprocess.run(["skopeo", "copy", "--quiet", image.oci("v1"), f"docker-archive:{archive}:{DOCKER_ARCHIVE_REF}"],
                   check=True, capture_output=True, timeout=300)
    (out / "digests.env").write_text(
        f"AMD64_MANIFEST={image.amd64_manifest}\nARM64_MANIFEST={image.arm64_manifest}\n"
        f"INDEX_DIGEST={image.index}\nAMD64_CONFIG={image.amd64_config}\nAMD64_MARKER='{MARKER}'\n"
        f"DOCKER_ARCHIVE_REF={DOCKER_ARCHIVE_REF}\n")
    return image
