"""Issue 15 §1: manifests are read the way Go's encoding/json (containerd, docker) reads them, or refused.

Each body below means one thing to Python's json and another to a Go client (keys matched
case-insensitively with Unicode simple folding, the last one winning; no NaN, no BOM, no UTF-16, lone
surrogates replaced, integers only in int64 fields). Every one is pushed to the real server on loopback
(filesystem and S3) and must be refused with MANIFEST_INVALID; nothing may be stored.
"""

from __future__ import annotations

import json

import pytest
from aiohttp.test_utils import TestClient

from tests.helpers import OCI_CONFIG, OCI_INDEX, OCI_MANIFEST, descriptor, digest_of
from tests.registry.test_api import error_code, push_blob

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
TARGZ = "application/vnd.oci.image.layer.v1.tar+gzip"
CONFIG = b'{"architecture":"amd64","os":"linux","config":{"Cmd":["/bin/sh"]}}'
LAYER = b"\x1f\x8b a runnable layer"
SIG = b'{"critical":{"identity":{"docker-reference":"x"},"image":{"docker-manifest-digest":"sha256:' + b"0" * 64 + \
      b'"},"type":"cosign container image signature"},"optional":null}'


def d(media_type: str, data: bytes) -> str:
    return json.dumps(descriptor(media_type, data))


CFG, RUN, SIGL = d(OCI_CONFIG, CONFIG), d(TARGZ, LAYER), d(SIMPLESIGNING, SIG)
HEAD = f'"schemaVersion":2,"mediaType":"{OCI_MANIFEST}"'
AMBIGUOUS = {
    # the attack: Python sees a cosign signature, Go the runnable layers
    "Layers after layers": f'{{{HEAD},"config":{CFG},"layers":[{SIGL}],"Layers":[{RUN}]}}',
    "LAYERS after layers": f'{{{HEAD},"config":{CFG},"layers":[{SIGL}],"LAYERS":[{RUN}]}}',
    "Config after config": f'{{{HEAD},"config":{d(OCI_CONFIG, SIG)},"Config":{CFG},"layers":[{RUN}]}}',
    "long s (U+017F) folds to s in Go": f'{{{HEAD},"config":{CFG},"layers":[{SIGL}],"layer\u017f":[{RUN}]}}',
    "Kelvin sign folds to k in Go": f'{{{HEAD},"config":{CFG},"layers":[{RUN}],"\u212aey":1,"kEY":2}}',
    "exact duplicate layers": f'{{{HEAD},"config":{CFG},"layers":[{RUN}],"layers":[{SIGL}]}}',
    "descriptor MediaType": f'{{{HEAD},"config":{CFG},"layers":[{{"mediaType":"{SIMPLESIGNING}",'
                            f'"MediaType":"{TARGZ}","digest":"{digest_of(LAYER)}","size":{len(LAYER)}}}]}}',
    "descriptor duplicate digest": f'{{{HEAD},"config":{CFG},"layers":[{{"mediaType":"{TARGZ}",'
                                   f'"digest":"{digest_of(SIG)}","digest":"{digest_of(LAYER)}","size":1}}]}}',
    "ArtifactType alone": f'{{{HEAD},"ArtifactType":"application/x","config":{CFG},"layers":[{RUN}]}}',
    "escaped key spelled in case": f'{{{HEAD},"config":{CFG},"layers":[{RUN}],"L\\u0061yers":[{SIGL}]}}',
    "manifests beside layers": f'{{{HEAD},"config":{CFG},"layers":[{RUN}],"manifests":[]}}',
    "lone surrogate in an annotation": f'{{{HEAD},"config":{CFG},"layers":[{RUN}],"annotations":{{"a":"\\ud800"}}}}',
    "annotation keys folding alike": f'{{{HEAD},"config":{CFG},"layers":[{RUN}],"annotations":{{"a":"1","A":"2"}}}}',
    "float size": f'{{{HEAD},"config":{CFG},"layers":[{RUN.replace(str(len(LAYER)), str(len(LAYER)) + ".0")}]}}',
    "NaN": f'{{{HEAD},"config":{CFG},"layers":[{RUN}],"x":NaN}}',
}


def _bodies() -> list[tuple[str, bytes, str]]:
    cases = [(name, text.encode(), OCI_MANIFEST) for name, text in AMBIGUOUS.items()]
    plain = f'{{{HEAD},"config":{CFG},"layers":[{RUN}]}}'
    cases.append(("UTF-8 byte-order mark", b"\xef\xbb\xbf" + plain.encode(), OCI_MANIFEST))
    cases.append(("UTF-16", plain.encode("utf-16"), OCI_MANIFEST))
    docker = (f'{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{d(DOCKER_CONFIG, CONFIG)},'
              f'"layers":[{d(SIMPLESIGNING, SIG)}],"Layers":[{d(TARGZ, LAYER)}]}}')
    cases.append(("Docker schema 2 Layers", docker.encode(), DOCKER_MANIFEST))
    index = f'{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[],"Manifests":[]}}'
    cases.append(("index Manifests", index.encode(), OCI_INDEX))
    cases.append(("index with layers", f'{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[],'
                                       f'"layers":[{RUN}]}}'.encode(), OCI_INDEX))
    return cases


@pytest.mark.parametrize("name, body, media_type", _bodies(), ids=[c[0] for c in _bodies()])
async def test_ambiguous_manifest_refused_at_push(client: TestClient, name: str, body: bytes, media_type: str) -> None:
    for blob in (CONFIG, LAYER, SIG):
        await push_blob(client, "secure/app", blob)
    resp = await client.put("/v2/secure/app/manifests/v1", data=body, headers={"Content-Type": media_type})
    assert resp.status == 400, await resp.text()
    assert await error_code(resp) == "MANIFEST_INVALID"
    assert (await client.get("/v2/secure/app/manifests/v1")).status == 404
    assert (await client.get(f"/v2/secure/app/manifests/{digest_of(body)}")).status == 404


async def test_plain_manifest_with_unusual_annotations_still_accepted(client: TestClient) -> None:
    """Guard: the strict reading refuses only what Go would read differently."""
    for blob in (CONFIG, LAYER):
        await push_blob(client, "secure/app", blob)
    body = (f'{{{HEAD},"config":{CFG},"layers":[{RUN}],'
            '"annotations":{"org.example.Size":"1","Size":"2","emoji":"\\ud83d\\ude00","k":"\u212a"}}').encode()
    resp = await client.put("/v2/secure/app/manifests/v1", data=body, headers={"Content-Type": OCI_MANIFEST})
    assert resp.status == 201, await resp.text()
