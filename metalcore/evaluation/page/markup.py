"""HTML pieces shared by the evaluation and sweep pages, and the one template both are poured into.

The pages are files a user opens from disk, so nothing is fetched: the style sheet and the script
sit beside this module and are copied into each page, figures become ``data:`` URIs, and the
page's data is JSON in a ``<script type="application/json">`` block.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Sequence
from html import escape
from pathlib import Path
from string import Template

HERE = Path(__file__).parent
PAGE = "report.html"  # what evaluate and report write beside their other outputs


def asset(name: str) -> str:
    return (HERE / name).read_text(encoding="utf-8")


def page(title: str, body: str, data: object = None, script: str = "") -> str:
    """A whole HTML document with the shared style sheet, ``data`` as JSON and ``script`` inline."""
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return Template(asset("template.html")).substitute(
        title=escape(title),
        style=asset("page.css"),
        body=body,
        data=payload.replace("</", "<\\/"),  # nothing in the data can close its script block
        script=script,
    )


def image(path: Path, alt: str) -> str:
    """A PNG written beside the page, inlined so the page stands alone ("" when it is absent)."""
    if not path.is_file():
        return ""
    encoded = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img class="figure" alt="{escape(alt)}" src="data:image/png;base64,{encoded}">'


def table(header: Sequence[str], rows: Iterable[Sequence[object]], numeric: Sequence[bool] = ()) -> str:
    """A plain table; cells are escaped, numeric columns right-aligned."""
    align = list(numeric) + [False] * (len(header) - len(numeric))
    head = "".join(f"<th{' class=num' if a else ''}>{escape(str(h))}</th>" for h, a in zip(header, align))
    body = "".join(
        "<tr>" + "".join(f"<td{' class=num' if a else ''}>{escape(str(c))}</td>" for c, a in zip(row, align)) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def facts(items: Iterable[tuple[str, object]]) -> str:
    """A definition list of (name, value), leaving out empty values."""
    return (
        '<dl class="facts">'
        + "".join(f"<dt>{escape(k)}</dt><dd>{escape(str(v))}</dd>" for k, v in items if v not in ("", None, {}))
        + "</dl>"
    )


def section(identifier: str, title: str, content: str) -> str:
    return f'<section id="{identifier}"><h2>{escape(title)}</h2>{content}</section>'
