"""The projects page shows keyless identities readably (issuer, subject or the regexps they must match)."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

from tests.keyless.sigstore_instance import GITHUB, SigstoreInstance

SUBJECT_REGEXP = r"^https://github\.com/acme/app/\.github/workflows/release\.yml@refs/tags/v.*$"
HOSTILE = "<script>alert(1)</script>"


async def test_projects_page_shows_keyless_identities(registry, tmp_path: Path) -> None:
    root = tmp_path / "trusted_root.json"
    root.write_text(json.dumps(SigstoreInstance().trusted_root()))
    identities = [{"issuer": GITHUB, "subject_regexp": SUBJECT_REGEXP},
                  {"issuer_regexp": "^https://gitlab\\.example$", "subject": f"release@acme.test{HOSTILE}"}]
    client = await registry({
        "trust_roots": {"corp": {"type": "sigstore", "trusted_root": str(root)}},
        "projects": {"secure": {"public": True, "content_trust": {"enforce": True, "require_any": [
            {"cosign": {"trust_root": "corp", "identities": identities}}]}}}})
    page = await (await client.get("/ui/")).text()
    row = re.search(r'<tr data-project="secure">(.*?)</tr>', page, re.S)
    assert row, page
    text = html.unescape(re.sub(r"<[^>]+>", " ", row.group(1)))
    assert (f"(trust root corp; issuer {GITHUB} · subject matching {SUBJECT_REGEXP}; "
            f"issuer matching ^https://gitlab\\.example$ · subject release@acme.test{HOSTILE})") in text, text
    assert "{" not in text and HOSTILE not in row.group(1)  # no dict text; what the config holds is escaped
