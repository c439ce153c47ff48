"""One notary-server and one trustreg per test module (started here, stopped after the module)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.clients.certs import make_certs
from tests.e2e.conftest import require
from tests.notary.harness import Side
from tests.notary.servers import start_notary_server, start_trustreg


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Side, Side]]:
    """(notary-server side, trustreg side), sharing one throwaway CA and server certificate."""
    require("notary", "notary-server")
    base = tmp_path_factory.mktemp("differential")
    certs = make_certs(base / "tls")
    ca, cert, key = certs.ca, certs.server_cert, certs.server_key
    reference = start_notary_server(base, cert, key, ca)
    try:
        ours = start_trustreg(base, cert, key, ca)
    except Exception:
        reference.stop()
        raise
    try:
        yield Side(reference, ca, base / "notary-server-cli"), Side(ours, ca, base / "trustreg-cli")
    finally:
        ours.stop()
        reference.stop()
