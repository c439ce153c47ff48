"""Differential: raw requests the CLI does not make (malformed uploads, rollbacks, odd paths), per request
the HTTP status and Notary error code of notary-server 0.7.0 and of trustreg must agree.

Where trustreg differs on purpose the test asserts both answers and says why:
- an empty request body announced as multipart: notary-server drops the connection; trustreg answers
  400 MALFORMED_UPLOAD (a client gets an error it can read).
- `<role>.<checksum>.json` naming another role's bytes: notary-server's memory store serves them (it
  looks the checksum up in the whole GUN); trustreg answers 404 (a checksum URL names one role's file).
- a posted snapshot whose `meta` does not match the stored targets (an old snapshot replayed alone):
  notary-server checks a snapshot only against the roles posted with it and then refuses the old
  version (VERSION); trustreg checks it against the roles it will be stored with and refuses it as
  inconsistent first (INVALID_UPDATE, ErrBadSnapshot). Both refuse; a new-version snapshot naming stale
  targets would be stored by notary-server and break every client, trustreg refuses it.
- server keys: notary-server creates a new key on every `GET …key` before a root exists and on every
  `POST …key`; trustreg creates at most one per role and root version and returns it again (issue 15:
  key creation must be bounded), so repeated calls return the same key.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from tests.notary.harness import Side, gun, multipart, run_both
from tests.notary.test_cli_sequences import assert_same, sha


def test_rollback_and_replay_attempts(pair: tuple[Side, Side]) -> None:
    g = gun("rollback")
    t = f"/v2/{g}/_trust/tuf"

    def scenario(side: Side) -> list[Any]:
        cli = side.cli("rollback")
        out: list[Any] = [cli.run("init", g, "-p"), cli.run("addhash", g, "a", "1", "--sha256", sha("a"), "-p")]
        old = {role: side.http("GET", f"{t}/{role}.json")[1] for role in ("root", "targets", "snapshot", "timestamp")}
        out += [cli.run("addhash", g, "b", "1", "--sha256", sha("b"), "-p")]
        for label, parts in (
            ("old targets+snapshot", [("targets", old["targets"]), ("snapshot", old["snapshot"])]),
            ("old snapshot", [("snapshot", old["snapshot"])]),
            ("old targets alone (client snapshot)", [("targets", old["targets"])]),
            ("current root again", [("root", old["root"])]),
            ("old timestamp only (ignored)", [("timestamp", old["timestamp"])]),
            ("root+targets+snapshot replay", [("root", old["root"]), ("targets", old["targets"]),
                                              ("snapshot", old["snapshot"])]),
        ):
            body, headers = multipart(parts)
            out.append(side.call(label, "POST", f"{t}/", body, headers))
        out += [cli.list(g), cli.run("key", "rotate", g, "snapshot", "-r")]
        body, headers = multipart([("targets", old["targets"])])
        out.append(side.call("old targets (server snapshot)", "POST", f"{t}/", body, headers))
        current = side.http("GET", f"{t}/targets.json")[1]
        body, headers = multipart([("targets", current)])
        out.append(side.call("current targets again", "POST", f"{t}/", body, headers))
        out += [cli.list(g), side.shape(g)]
        return out

    assert_same(pair, scenario, {"old snapshot": ((400, "VERSION"), (400, "INVALID_UPDATE"))})


def test_malformed_uploads_and_paths(pair: tuple[Side, Side]) -> None:
    g = gun("raw")
    t = f"/v2/{g}/_trust/tuf"

    def scenario(side: Side) -> list[Any]:
        out: list[Any] = []
        empty, headers = multipart([])
        out.append(side.call("empty multipart, no data", "POST", f"{t}/", empty, headers))
        out.append(side.call("not multipart", "POST", f"{t}/", b"{}", {"Content-Type": "application/json"}))
        for label, parts in (
            ("no filename", [(None, b"{}")]),
            ("invalid role", [("bogus", b"{}")]),
            ("invalid delegation name", [("targets/Bad", b"{}")]),
            ("not json", [("targets", b"nope")]),
            ("no root", [("targets", b'{"signed":{"_type":"Targets"},"signatures":[]}')]),
        ):
            body, headers = multipart(parts)
            out.append(side.call(label, "POST", f"{t}/", body, headers))
        cli = side.cli("raw")
        out += [cli.run("init", g, "-p"), cli.run("addhash", g, "a", "1", "--sha256", sha("a"), "-p")]
        out.append(side.call("empty multipart, client snapshot", "POST", f"{t}/", empty, headers))
        for method, path in (("GET", "root.json"), ("GET", "1.root.json"), ("GET", "01.root.json"),
                             ("GET", "0.root.json"), ("GET", "9.root.json"), ("HEAD", "root.json"),
                             ("PUT", "root.json"), ("GET", ""), ("GET", "root.JSON"), ("GET", "targets/x.json"),
                             ("GET", "bogus.json"), ("GET", "root.key"), ("GET", "targets.key"),
                             ("POST", "targets.key"), ("DELETE", "root.json")):
            out.append(side.call(f"{method} {path}", method, f"{t}/{path}"))
        root = side.http("GET", f"{t}/root.json")[1]
        out.append(side.call("root by checksum", "GET", f"{t}/root.{hashlib.sha256(root).hexdigest()}.json"))
        out.append(side.call("unknown checksum", "GET", f"{t}/root.{'0' * 64}.json"))
        out.append(side.call("other trust path", "GET", f"/v2/{g}/_trust/other"))
        out.append(side.call("delete never published", "DELETE", f"/v2/{gun('never')}/_trust/tuf/"))
        out.append(side.call("health", "GET", "/_notary_server/health"))
        return out

    assert_same(pair, scenario)


def test_deliberate_differences(pair: tuple[Side, Side]) -> None:
    g = gun("differences")
    t = f"/v2/{g}/_trust/tuf"

    def scenario(side: Side) -> dict[str, Any]:
        out: dict[str, Any] = {}
        status, _ = side.http("POST", f"{t}/", b"", {"Content-Type": "multipart/form-data; boundary=x"})
        out["empty body"] = (status, None)
        keys = [side.http("GET", f"{t}/timestamp.key") for _ in range(3)]
        out["GET key before root"] = ({k[0] for k in keys}, len({k[1] for k in keys}))
        cli = side.cli("differences")
        cli.run("init", g, "-p")
        rotated = [side.http("POST", f"{t}/snapshot.key") for _ in range(3)]
        out["POST key"] = ({k[0] for k in rotated}, len({k[1] for k in rotated}))
        root = side.http("GET", f"{t}/root.json")[1]
        other = side.call("targets by root's checksum", "GET", f"{t}/targets.{hashlib.sha256(root).hexdigest()}.json")
        out["checksum of another role"] = (other["status"], other["code"])
        return out

    reference, ours = run_both(pair, scenario)
    # notary-server drops the connection; trustreg answers with an error the client can read
    assert reference["empty body"][0] == 0 and ours["empty body"][0] == 400
    # notary-server mints a key per call; trustreg one per role and root version
    assert reference["GET key before root"] == ({200}, 3) and ours["GET key before root"] == ({200}, 1)
    assert reference["POST key"] == ({200}, 3) and ours["POST key"] == ({200}, 1)
    # notary-server's memory store ignores the role in checksum URLs; trustreg does not
    assert reference["checksum of another role"] == (200, None)
    assert ours["checksum of another role"] == (404, "METADATA_NOT_FOUND")


def test_server_key_shape(pair: tuple[Side, Side]) -> None:
    """The key endpoints return Notary's key JSON in notary-server's field order (not canonical)."""

    def scenario(side: Side) -> list[Any]:
        status, data = side.http("GET", f"/v2/{gun('keyshape')}/_trust/tuf/snapshot.key")
        key = json.loads(data)
        return [status, list(key), list(key["keyval"]), key["keyval"]["private"]]

    assert_same(pair, scenario)
