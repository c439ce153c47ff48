"""The UI's Jinja2 templates (autoescaped) and its stylesheet, kept in code so packaging needs nothing."""
# ruff: noqa: E501  (HTML rows read better unbroken)

from __future__ import annotations

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1d232b;background:#f6f7f9}
header{background:#1f2d3d;color:#fff;padding:10px 24px;display:flex;gap:24px;align-items:center}
header a{color:#fff;text-decoration:none}header .brand{font-weight:700;font-size:17px}
header .who{margin-left:auto;opacity:.9}
main{padding:16px 24px}
h1{font-size:20px;margin:8px 0 12px}h2{font-size:16px;margin:22px 0 8px}
table{border-collapse:collapse;background:#fff;width:100%;box-shadow:0 1px 2px rgba(0,0,0,.08)}
th,td{text-align:left;padding:6px 10px;border-bottom:1px solid #e4e7eb;vertical-align:top}
th{background:#eef1f4;font-weight:600;white-space:nowrap}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12.5px}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600}
.signed,.served,.on{background:#dff3e4;color:#126b2f}
.unsigned,.off{background:#eceff3;color:#4a5563}
.invalid,.refused{background:#fde2e1;color:#a21b16}
.reason{color:#555;font-size:12.5px;overflow-wrap:anywhere}
td.decision-cell{min-width:14em;max-width:26em}td.sigs{max-width:30em}.nowrap{white-space:nowrap}
.muted{color:#6b7480}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;background:#fff;padding:10px 14px;
box-shadow:0 1px 2px rgba(0,0,0,.08)}
dl.facts dt{font-weight:600}dl.facts dd{margin:0}
.pager{margin:10px 0}
.proxy-badge{background:#e3ecfa;color:#1d4f91}div.proxy{margin-top:2px;font-size:12.5px}td.upstream{max-width:24em;overflow-wrap:anywhere}
"""

BASE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{% block title %}trustreg{% endblock %} · trustreg</title>
<link rel="stylesheet" href="/ui/style.css"></head>
<body><header><a class="brand" href="/ui/">trustreg</a><a href="/ui/">Projects</a>
<span class="who">{% if principal %}signed in as <strong>{{ principal }}</strong>
{% elif auth_enabled %}anonymous · <a href="/ui/login">log in</a>{% endif %}</span></header>
<main>{% block main %}{% endblock %}</main></body></html>
"""

MACROS = """
{% macro signature(sig) -%}
<span class="badge {{ sig.status }}" data-source="{{ sig.source }}">{{ sig.source }}: {{ sig.status }}</span>
{%- if sig.signer %} by <code>{{ sig.signer }}</code>{% endif %}
{%- if sig.keyids %} <span class="mono muted" title="{{ sig.keyids|join(' ') }}">key
{%- for k in sig.keyids %} {{ k[:12] }}{% endfor %}</span>{% endif %}
{%- if sig.expires and sig.status == "signed" %} <span class="muted" title="{{ sig.expires }}">until {{ sig.expires|when }}</span>{% endif %}
{%- if sig.reason %}<div class="reason">{{ sig.reason }}</div>{% endif %}
{%- endmacro %}
{% macro decision(d) -%}
{% if d.served %}<span class="badge served decision">served</span>
{%- else %}<span class="badge refused decision">refused</span>: <span class="reason">{{ d.reason }}</span>{% endif %}
{%- endmacro %}
{% macro proxy_of(proxy) -%}
{% if proxy %}<div class="proxy"><span class="badge proxy-badge">proxy</span> of <code>{{ proxy.url }}</code></div>{% endif %}
{%- endmacro %}
{% macro resolution(r) -%}
{% if r %}<div class="mono" title="{{ r.digest }}">{{ r.upstream }}</div><div class="muted">resolved <span title="{{ r.resolved }}">{{ r.resolved|when }}</span>, until <span title="{{ r.expires }}">{{ r.expires|when }}</span></div>
{%- if r.refused %}<span class="badge refused verdict">refused</span>: <span class="reason">{{ r.verdict }}</span>{% else %}<span class="badge served verdict">{{ r.verdict }}</span>{% endif %}
{%- else %}<span class="muted">not resolved by tag</span>{% endif %}
{%- endmacro %}
{% macro policy(ct) -%}
{% if ct.enforced %}<span class="badge on">enforced</span>{% else %}<span class="badge off">not enforced</span>{% endif %}
{%- endmacro %}
"""

INDEX = """{% extends "base.html" %}{% import "macros.html" as m %}
{% block title %}Projects{% endblock %}
{% block main %}<h1>Projects</h1>
{% if not projects %}<p class="muted">No project to show{% if auth_enabled and not principal %}
(anonymous users see public projects only; <a href="/ui/login">log in</a>){% endif %}.</p>{% else %}
<table id="projects"><thead><tr><th>Project</th><th>Access</th><th>Content trust</th><th>Sources</th>
<th>Signers</th><th>Pinned root keys</th><th>Index children</th><th>Repositories</th></tr></thead><tbody>
{% for p in projects %}<tr data-project="{{ p.name }}"><td><strong>{{ p.name }}</strong>{{ m.proxy_of(p.proxy) }}</td>
<td>{{ "public" if p.public else "private" }}</td><td>{{ m.policy(p.content_trust) }}</td>
<td>{% for r in p.content_trust.require_any %}{{ r.source }}{% if r.trust_root %} <span class="muted">(trust root {{ r.trust_root }}{% if r.identities %}; {{ r.identities|identities }}{% endif %})</span>{% endif %}{% if not loop.last %}<br>{% endif %}{% else %}notary{% endfor %}</td>
<td>{% for s in p.content_trust.signers %}<code>{{ s }}</code>{% if not loop.last %}, {% endif %}{% endfor %}</td>
<td class="mono">{% for k in p.content_trust.root_keys %}{{ k[:12] }} {% else %}<span class="muted">none</span>{% endfor %}</td>
<td>{{ "inherit signature" if p.content_trust.inherit_index else "must be signed" }}</td>
<td>{% for r in p.repositories %}<a href="/ui/repositories/{{ r|urlencode }}">{{ r }}</a><br>
{% else %}<span class="muted">none</span>{% endfor %}</td></tr>{% endfor %}
</tbody></table>{% endif %}{% endblock %}
"""

REPOSITORY = """{% extends "base.html" %}{% import "macros.html" as m %}
{% block title %}{{ name }}{% endblock %}
{% block main %}<h1>{{ name }}</h1>
<p>Project <strong>{{ project.name }}</strong>: content trust {{ m.policy(project.content_trust) }}
{%- if project.content_trust.enforced %}, signers {% for s in project.content_trust.signers %}<code>{{ s }}</code>
{%- if not loop.last %}, {% endif %}{% endfor %}{% endif %}.</p>
{% if project.proxy %}<p id="proxy">A <span class="badge proxy-badge">proxy</span> of <code>{{ project.proxy.url }}</code>:
pulled on demand, admitted only when the gate accepts the upstream's signatures; a cached tag is re-resolved upstream after {{ project.proxy.tag_ttl|int }} s.</p>{% endif %}
<table id="tags"><thead><tr><th>Tag</th><th>Digest</th><th>Type</th><th>Platforms</th><th>Size</th>
<th>{{ "Cached" if project.proxy else "Last push" }}</th><th>Signatures</th><th>Gate decision</th>{% if project.proxy %}<th>Upstream</th>{% endif %}</tr></thead><tbody>
{% for t in tags %}<tr data-tag="{{ t.tag }}"><td><strong>{{ t.tag }}</strong></td>
<td class="mono"><a href="/ui/repositories/{{ name|urlencode }}/manifests/{{ t.digest|urlencode }}"
 title="{{ t.digest }}">{{ t.digest[:19] }}…</a></td>
<td><span title="{{ t.mediaType }}">{{ t.kind }}</span>{% if t.artifactType %}<div class="reason">{{ t.artifactType }}</div>{% endif %}</td>
<td>{{ t.platforms|join(", ") }}</td><td class="nowrap">{{ t.size|filesize }}</td>
<td class="nowrap" title="{{ t.pushed }}">{{ t.pushed|when }}</td>
<td class="sigs">{% for s in t.signatures %}<div>{{ m.signature(s) }}</div>{% endfor %}</td>
<td class="decision-cell">{{ m.decision(t.decision) }}</td>{% if project.proxy %}<td class="upstream">{{ m.resolution(t.proxy) }}</td>{% endif %}</tr>
{% else %}<tr><td colspan="{{ 9 if project.proxy else 8 }}" class="muted">no tags{% if project.proxy %} cached{% endif %}</td></tr>{% endfor %}
</tbody></table>
{% if refused %}<h2>Refused upstream</h2><p class="muted">Resolved upstream, refused by the gate, not stored.</p>
<table id="refused"><thead><tr><th>Tag</th><th>Upstream</th><th>Digest</th><th>Resolved</th><th>Gate verdict</th></tr></thead><tbody>
{% for r in refused %}<tr data-tag="{{ r.tag }}"><td><strong>{{ r.tag }}</strong></td><td class="mono">{{ r.upstream }}</td>
<td class="mono" title="{{ r.digest }}">{{ r.digest[:19] }}…</td><td class="nowrap" title="{{ r.resolved }}">{{ r.resolved|when }}</td>
<td class="decision-cell"><span class="badge refused verdict">refused</span>: <span class="reason">{{ r.verdict }}</span></td></tr>{% endfor %}
</tbody></table>{% endif %}
{% if next_link %}<p class="pager"><a href="{{ next_link }}">next page →</a></p>{% endif %}
{% endblock %}
"""

MANIFEST = """{% extends "base.html" %}{% import "macros.html" as m %}
{% block title %}{{ r.repository }}@{{ r.digest[:19] }}{% endblock %}
{% block main %}
<h1><a href="/ui/repositories/{{ r.repository|urlencode }}">{{ r.repository }}</a>@<span class="mono">{{ r.digest }}</span></h1>
<dl class="facts">
<dt>Type</dt><dd>{{ r.kind }} <code>{{ r.mediaType }}</code></dd>
{% if r.artifactType %}<dt>Artifact type</dt><dd><code>{{ r.artifactType }}</code></dd>{% endif %}
<dt>Size</dt><dd>{{ r.size|filesize }}</dd>
<dt>Tags</dt><dd>{{ r.tags|join(", ") or "none" }}</dd>
{% if r.platforms %}<dt>Platforms</dt><dd>{{ r.platforms|join(", ") }}</dd>{% endif %}
<dt>Signatures</dt><dd>{% for s in r.signatures %}<div>{{ m.signature(s) }}</div>{% endfor %}</dd>
<dt>Pull by digest</dt><dd class="decision-cell">{{ m.decision(r.decision) }}</dd>
{% if r.subject %}<dt>Subject</dt><dd class="mono"><a href="/ui/repositories/{{ r.repository|urlencode }}/manifests/{{ r.subject.digest|urlencode }}">{{ r.subject.digest }}</a></dd>{% endif %}
</dl>
{% if r.config %}<h2>Config</h2><table id="config"><thead><tr><th>Digest</th><th>Media type</th><th>Size</th></tr></thead>
<tbody><tr><td class="mono">{{ r.config.digest }}</td><td><code>{{ r.config.mediaType }}</code></td><td>{{ r.config.size|filesize }}</td></tr></tbody></table>{% endif %}
{% if r.layers %}<h2>Layers</h2><table id="layers"><thead><tr><th>#</th><th>Digest</th><th>Media type</th><th>Size</th><th>Annotations</th></tr></thead><tbody>
{% for l in r.layers %}<tr><td>{{ loop.index }}</td><td class="mono">{{ l.digest }}</td><td><code>{{ l.mediaType }}</code></td>
<td>{{ l.size|filesize }}</td><td>{{ l.annotations|annotations }}</td></tr>{% endfor %}</tbody></table>{% endif %}
{% if r.manifests %}<h2>Manifests</h2><table id="children"><thead><tr><th>Digest</th><th>Platform</th><th>Media type</th><th>Size</th></tr></thead><tbody>
{% for c in r.manifests %}<tr><td class="mono"><a href="/ui/repositories/{{ r.repository|urlencode }}/manifests/{{ c.digest|urlencode }}">{{ c.digest }}</a></td>
<td>{{ c.platform|platform }}</td><td><code>{{ c.mediaType }}</code></td><td>{{ c.size|filesize }}</td></tr>{% endfor %}</tbody></table>{% endif %}
<h2>Referrers</h2>
<table id="referrers"><thead><tr><th>Digest</th><th>Artifact type</th><th>Media type</th><th>Size</th><th>Annotations</th></tr></thead><tbody>
{% for d in r.referrers %}<tr><td class="mono"><a href="/ui/repositories/{{ r.repository|urlencode }}/manifests/{{ d.digest|urlencode }}">{{ d.digest }}</a></td>
<td><code>{{ d.artifactType }}</code></td><td><code>{{ d.mediaType }}</code></td><td>{{ d.size|filesize }}</td><td>{{ d.annotations|annotations }}</td></tr>
{% else %}<tr><td colspan="5" class="muted">none</td></tr>{% endfor %}</tbody></table>
{% if r.annotations %}<h2>Annotations</h2><table id="annotations"><tbody>
{% for k, v in r.annotations|dictsort %}<tr><th>{{ k }}</th><td>{{ v }}</td></tr>{% endfor %}</tbody></table>{% endif %}
{% endblock %}
"""

ERROR = """{% extends "base.html" %}
{% block title %}{{ status }}{% endblock %}
{% block main %}<h1>{{ status }} {{ title }}</h1><p>{{ message }}</p>
{% if status == 401 %}<p><a href="/ui/login">Log in</a> with your registry credentials.</p>{% endif %}
<p><a href="/ui/">Back to the projects</a></p>{% endblock %}
"""

TEMPLATES = {
    "base.html": BASE,
    "macros.html": MACROS,
    "index.html": INDEX,
    "repository.html": REPOSITORY,
    "manifest.html": MANIFEST,
    "error.html": ERROR,
}
