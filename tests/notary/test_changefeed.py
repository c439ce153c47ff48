"""Differential: the changefeed (`GET [/v2/<gun>]/_trust/changefeed?change_id=&records=`) of notary-server
0.7.0 and of trustreg after the same CLI sequence on fresh servers (this module has its own pair, so
change IDs line up): every page of the global and of a per-GUN feed must list the same records (ID,
GUN, timestamp version, category, whether a checksum is given) in the same order, and bad parameters
get the same 400 INVALID_PARAMETERS.

Deliberate difference: `records` negative with `change_id=0` (records before the first): notary-server
panics and drops the connection; trustreg answers an empty page.
"""

from __future__ import annotations

import json
from typing import Any

from tests.notary.harness import Side, error_code, gun, run_both
from tests.notary.test_cli_sequences import sha

FIRST, SECOND, NEVER = gun("feed-one"), gun("feed-two"), gun("feed-never")


def page(side: Side, path: str) -> Any:
    status, data = side.http("GET", path)
    if status != 200:
        return {"status": status, "code": error_code(data)}
    body = json.loads(data)
    records = body["records"]
    rows = None if records is None else [
        (r["ID"], r["GUN"], r["Version"], r["Category"], bool(r["SHA256"]), sorted(r)) for r in records]
    return {"status": 200, "count": body["count"], "records": rows}


def history(side: Side) -> list[Any]:
    """The same changes on both servers: publishes, a server-signed snapshot, deletions, a re-creation."""
    one, two = side.cli("feed-one"), side.cli("feed-two")
    out = [page(side, "/v2/_trust/changefeed?records=10")]  # nothing recorded yet
    out += [one.run("init", FIRST, "-p")["rc"], two.run("init", SECOND, "-p")["rc"],
            one.run("addhash", FIRST, "a", "1", "--sha256", sha("a"), "-p")["rc"],
            one.run("key", "rotate", FIRST, "snapshot", "-r")["rc"], one.run("publish", FIRST)["rc"],
            two.run("delete", SECOND, "--remote")["rc"],
            side.http("DELETE", f"/v2/{SECOND}/_trust/tuf/")[0],  # nothing left: no record
            side.http("DELETE", f"/v2/{NEVER}/_trust/tuf/")[0],
            two.run("init", SECOND, "-p")["rc"], one.run("addhash", FIRST, "b", "1", "--sha256", sha("b"), "-p")["rc"]]
    return out


QUERIES = [
    f"{prefix}/_trust/changefeed?{query}"
    for prefix in ("/v2", f"/v2/{FIRST}", f"/v2/{SECOND}", f"/v2/{NEVER}")
    for query in ("records=100", "records=0", "change_id=0&records=3", "change_id=3&records=3", "change_id=2&records=1",
                  "change_id=7&records=10", "change_id=8&records=5", "change_id=50&records=5",
                  "change_id=-1&records=3", "change_id=-1&records=100", "change_id=-1&records=-2",
                  "change_id=5&records=-2", "change_id=9&records=-100", "change_id=1&records=-1",
                  "change_id=&records=2", "change_id=+2&records=%2B2", "change_id=-5&records=2")
]
BAD = ["/v2/_trust/changefeed", "/v2/_trust/changefeed?records=", "/v2/_trust/changefeed?records=x",
       "/v2/_trust/changefeed?records=1.5", "/v2/_trust/changefeed?records=99999999999",
       "/v2/_trust/changefeed?records=1&change_id=x", "/v2/_trust/changefeed?records=1&change_id=99999999999",
       f"/v2/{FIRST}/_trust/changefeed?change_id=1", f"/v2/{FIRST}/_trust/changefeed?records=1&change_id=0x1"]


def test_changefeed_pages_agree(pair: tuple[Side, Side]) -> None:
    def scenario(side: Side) -> list[Any]:
        return [*history(side), *(page(side, q) for q in QUERIES + BAD)]

    reference, ours = run_both(pair, scenario)
    assert reference[0] == {"status": 200, "count": 0, "records": None}
    assert any(r.get("count", 0) > 5 for r in reference if isinstance(r, dict))  # the sequence was recorded
    labels = ["history"] * (len(reference) - len(QUERIES) - len(BAD)) + QUERIES + BAD
    for query, expected, got in zip(labels, reference, ours, strict=True):
        assert got == expected, f"{query}\nnotary-server: {expected}\ntrustreg:      {got}"
    for bad in ours[-len(BAD):]:
        assert bad == {"status": 400, "code": "INVALID_PARAMETERS"}


def test_records_before_the_first(pair: tuple[Side, Side]) -> None:
    reference, ours = run_both(pair, lambda side: page(side, "/v2/_trust/changefeed?change_id=0&records=-2"))
    assert reference == {"status": 0, "code": None}  # notary-server drops the connection
    assert ours == {"status": 200, "count": 0, "records": []}
