"""The content-trust refusal as clients see it (measured with docker 28, podman 4.3, skopeo 1.9,
containerd 1.6 `ctr` and its CRI PullImage; exact lines in README "What each client prints"):

- status 412 Precondition Failed, with the reason in the reason phrase too: containerd (ctr, the CRI,
  so kubelet events) resolves a tag with HEAD, which has no body, and prints only the status line;
- code MANIFEST_UNVERIFIED ("manifest failed signature verification", a code the OCI conformance
  suite knows): docker answers DENIED (and NAME_UNKNOWN) with "pull access denied ... may require
  'docker login'" and MANIFEST_UNKNOWN with "not found"; podman retries every code but UNAUTHORIZED,
  DENIED, NAME_UNKNOWN and MANIFEST_UNKNOWN (three attempts), which costs it two retries here;
- the message begins with the policy's sentence ("The image is not signed in Notary.") and names the
  reason; `detail` keeps repository, reference, digest and reason. No Docker-Content-Digest header, so
  no client can take a refused answer as a match for a copy it holds.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from registry.errors import RegistryError

CODE = "MANIFEST_UNVERIFIED"
STATUS = 412
MAX_PHRASE = 300


def reason_phrase(message: str) -> str:
    """`Precondition Failed: <message>` as a valid HTTP/1.1 reason phrase (printable ASCII, bounded)."""
    text = "".join(c if 32 <= ord(c) < 127 else "?" for c in f"Precondition Failed: {message}")
    return text[:MAX_PHRASE]


class Refusal(RegistryError):
    """A manifest read refused by the content-trust gate."""

    def __init__(self, message: str, reason: str, detail: Any) -> None:
        text = f"{message} Reason: {reason.rstrip('.')}." if reason else message
        super().__init__(CODE, text, detail, status=STATUS)

    def response(self) -> web.Response:
        resp = super().response()
        resp.set_status(self.status, reason_phrase(self.message))
        return resp
