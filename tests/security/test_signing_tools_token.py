"""Issue 15 §4 with the real signing tools in token mode: the push-holder exemption follows the token's
scope, yet `cosign sign` and `notation sign` (which read the subject with a pull token first) still sign
in a private enforced project: they are invited, by an insufficient_scope challenge, to show push. A
pull-only credential (carol, via containerd) stays refused before and is served after signing."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.conftest import image, test_image  # noqa: F401
from tests.e2e.conftest_containerd import Containerd, containerd  # noqa: F401
from tests.e2e.test_signatures import COSIGN_REFUSAL, NOTATION_REFUSAL, cosign_sign, make_env, notation_setup
from tests.e2e.test_signatures import notation_sign as notation_sign_as_alice


def test_cosign_and_notation_sign_with_token_auth(test_image: Path, tmp_path: Path) -> None:  # noqa: F811
    e = make_env(test_image, tmp_path, token_auth=True)
    try:
        addr = e.server.addr
        cosigned, notarized = e.push("cosigned/tok"), e.push("notarized/tok")
        assert "no signature found" in e.refused("cosigned/tok", COSIGN_REFUSAL)
        assert "no signature found" in e.refused("notarized/tok", NOTATION_REFUSAL)
        cosign_sign(e, "ci", f"{addr}/cosigned/tok@{cosigned}")
        notation_setup(e)
        notation_sign_as_alice(e, "release", f"{addr}/notarized/tok@{notarized}")
        e.pull("cosigned/tok")
        e.pull("notarized/tok")
        log = e.server.log()
        assert "insufficient_scope" not in log  # the challenge is a response header, not an error logged
    finally:
        e.server.stop()
