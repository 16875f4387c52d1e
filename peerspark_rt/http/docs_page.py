"""The OpenAPI document as a web page: plain server-rendered HTML with its own small
stylesheet, so nothing is fetched from elsewhere when it is viewed."""

from __future__ import annotations

import html
import json
import re
from typing import Any

from .contract import CALLERS

_STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:0 auto;max-width:70rem;padding:1rem 2rem;
color:#1d232a}
h1{margin-bottom:.2rem}h2{border-bottom:2px solid #dde3ea;padding-bottom:.2rem;margin-top:2.5rem}
details.op{border:1px solid #dde3ea;border-radius:6px;margin:.4rem 0;padding:.3rem .7rem}
summary{cursor:pointer}code,pre{font:13px/1.4 ui-monospace,monospace}
pre{background:#f5f7f9;padding:.6rem;overflow:auto;border-radius:4px}
.m{display:inline-block;min-width:4.2rem;font-weight:700;text-transform:uppercase}
.get{color:#1a6fb5}.post{color:#2c8a3c}.put,.patch{color:#a0650a}.delete{color:#b3261e}
table{border-collapse:collapse;margin:.4rem 0}td,th{border:1px solid #dde3ea;padding:.15rem .5rem;
text-align:left;vertical-align:top}.ok{background:#e6f4ea}.no{background:#fbeaea}
.muted{color:#5b6570}
"""


def render_page(document: dict[str, Any]) -> str:
    """The OpenAPI document as one self-contained HTML page."""
    by_tag: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for path, item in document["paths"].items():
        for method, op in item.items():
            by_tag.setdefault(op["tags"][0], []).append((method, path, op))
    out = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>{_e(document['info']['title'])}</title>",
        '<meta name=viewport content="width=device-width,initial-scale=1">',
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{_e(document['info']['title'])} <span class=muted>"
        f"{_e(document['info']['version'])}</span></h1>",
        f"<p>{_prose(document['info']['description'])}</p>",
        '<p>Machine-readable: <a href="/api/openapi.json">/api/openapi.json</a> (OpenAPI 3.1). '
        "Send <code>Authorization: Bearer &lt;access token&gt;</code> unless an operation says "
        "it is public.</p>",
        "<p>Sections: "
        + ", ".join(f'<a href="#tag-{_e(tag)}">{_e(tag)}</a>' for tag in sorted(by_tag))
        + ', <a href="#schemas">schemas</a>.</p>',
    ]
    for tag in sorted(by_tag):
        out.append(f'<h2 id="tag-{_e(tag)}">{_e(tag)}</h2>')
        for method, path, op in sorted(by_tag[tag], key=lambda x: (x[1], x[0])):
            out.append(_render_operation(method, path, op))
    out.append('<h2 id="schemas">Schemas</h2>')
    for name, schema in sorted(document["components"]["schemas"].items()):
        out.append(
            f'<details id="schema-{_e(name)}"><summary><code>{_e(name)}</code></summary>'
            f"<pre>{_e(json.dumps(schema, indent=2))}</pre></details>"
        )
    out.append("</body></html>")
    return "\n".join(out)


def _render_operation(method: str, path: str, op: dict[str, Any]) -> str:
    parts = [
        f'<details class=op id="{_e(op["operationId"])}"><summary>'
        f'<span class="m {method}">{method}</span> <code>{_e(path)}</code> '
        f"&mdash; {_prose(op['summary'])}"
        + (" <span class=muted>(public)</span>" if op.get("security") == [] else "")
        + "</summary>"
    ]
    if op.get("description"):
        parts.append(f"<p>{_prose(op['description'])}</p>")
    parts.append(_render_access(op["x-access"]))
    if op.get("parameters"):
        params = "".join(
            f"<tr><td><code>{_e(p['name'])}</code></td><td>{_e(p['in'])}</td>"
            f"<td>{'yes' if p.get('required') else ''}</td>"
            f"<td><code>{_e(_schema_text(p['schema']))}</code></td></tr>"
            for p in op["parameters"]
        )
        parts.append(
            "<table><tr><th>parameter</th><th>in</th><th>required</th><th>schema</th></tr>"
            f"{params}</table>"
        )
    if "requestBody" in op:
        bodies = ", ".join(
            f"<code>{_e(media)}</code> {_schema_link(content.get('schema', {}))}"
            for media, content in op["requestBody"]["content"].items()
        )
        optional = "" if op["requestBody"].get("required") else " (optional)"
        parts.append(f"<p>Body{optional}: {bodies}</p>")
    rows: list[str] = []
    for status, response in op["responses"].items():
        contents = ", ".join(
            f"<code>{_e(media)}</code> {_schema_link(c.get('schema', {}))}"
            for media, c in response.get("content", {}).items()
        )
        rows.append(
            f"<tr><td>{_e(status)}</td><td>{_prose(response['description'])}</td>"
            f"<td>{contents}</td></tr>"
        )
    parts.append(
        "<table><tr><th>status</th><th>meaning</th><th>body</th></tr>"
        + "".join(rows)
        + "</table></details>"
    )
    return "".join(parts)


def _render_access(statuses: dict[str, int]) -> str:
    head = "".join(f"<th>{_e(caller)}</th>" for caller in CALLERS)
    cells = "".join(
        f"<td class={'ok' if statuses[c] < 400 else 'no'}>{statuses[c]}</td>" for c in CALLERS
    )
    return (
        "<table><tr><th>who</th>" + head + "</tr><tr><th>status</th>" + cells + "</tr></table>"
        "<p class=muted>Against a private pod's objects: outsider = signed in, not a member; "
        "banned = banned from the pod; admin = platform admin.</p>"
    )


def _schema_link(schema: dict[str, Any]) -> str:
    ref = schema.get("$ref")
    if ref:
        name = ref.rsplit("/", 1)[-1]
        return f'<a href="#schema-{_e(name)}">{_e(name)}</a>'
    return f"<code>{_e(_schema_text(schema))}</code>" if schema else ""


def _schema_text(schema: dict[str, Any]) -> str:
    return json.dumps(schema, separators=(",", ":"))


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _prose(text: str) -> str:
    """Escaped text with its `code spans` shown as code."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", _e(text))
