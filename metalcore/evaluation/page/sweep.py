"""A sweep's ``report.html``: the report's tables and plot, each configuration linked to its jobs' evaluation pages.

The report is written as Markdown for the terminal; the page turns the same text into HTML (headings,
tables, lists, paragraphs: all the report uses), so the two never disagree, and adds a column to the
main table that links each configuration's jobs to the ``report.html`` that ``metalcore.evaluate``
left in ``<job>/evaluation/<checkpoint>-<data>/``.
"""

from __future__ import annotations

import re
from html import escape
from pathlib import Path

from metalcore.core.files import write_text
from metalcore.evaluation.page.markup import PAGE, image, page, section

CELL = re.compile(r"(?<!\\)\|")


def evaluation_links(groups: list, root: Path) -> list[str]:
    """For each configuration (in table order): links to its jobs' evaluation pages, relative to ``root``."""
    links = []
    for group in groups:
        found = [
            (job.folder.name, p.relative_to(root).as_posix())
            for job in group.jobs
            for p in sorted(job.folder.glob(f"evaluation/*/{PAGE}"))
        ]
        links.append(" ".join(f'<a href="{escape(href)}">{escape(name)}</a>' for name, href in found) or "-")
    return links


def cells(line: str) -> list[str]:
    return [c.strip().replace("\\|", "|") for c in CELL.split(line.strip())[1:-1]]


def markdown_html(text: str, links: list[str] | None = None) -> str:
    """The report's Markdown as HTML; ``links`` (trusted HTML) become a last column of its first table."""
    out: list[str] = []
    lines = text.splitlines()
    i, tables = 0, 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            level = min(len(line) - len(line.lstrip("#")) + 1, 4)
            out.append(f"<h{level}>{escape(line.lstrip('#').strip())}</h{level}>")
        elif line.startswith("|"):
            block = []
            while i < len(lines) and lines[i].startswith("|"):
                block.append(lines[i])
                i += 1
            extra = links if tables == 0 and links is not None else None
            out.append(table_html([cells(b) for b in block if not re.fullmatch(r"\|[-|: ]+\|", b.strip())], extra))
            tables += 1
            continue
        elif line.startswith("- "):
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                items.append(f"<li>{escape(lines[i][2:])}</li>")
                i += 1
            out.append(f"<ul>{''.join(items)}</ul>")
            continue
        elif line.strip():
            out.append(f"<p>{escape(line)}</p>")
        i += 1
    return "\n".join(out)


def table_html(rows: list[list[str]], links: list[str] | None) -> str:
    header, body = rows[0], rows[1:]
    head = "".join(f"<th>{escape(h)}</th>" for h in header) + ("<th>evaluation pages</th>" if links else "")
    lines = []
    for n, row in enumerate(body):
        extra = f"<td>{links[n]}</td>" if links and n < len(links) else ("<td></td>" if links else "")
        lines.append("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + extra + "</tr>")
    return f'<div class="table-wrap"><table><thead><tr>{head}</tr></thead><tbody>{"".join(lines)}</tbody></table></div>'


def write_sweep_page(path: Path, sweep, report: str, plot: Path | None = None) -> Path:
    """``report.html`` for ``sweep`` from its Markdown ``report``, with the plot inlined when there is one."""
    first, _, rest = report.partition("\n")
    content = markdown_html(rest, evaluation_links(sweep.groups, sweep.root))
    figure = image(plot, f"{sweep.metric} against each swept parameter") if plot else ""
    body = (
        f"<header><h1>{escape(first.lstrip('#').strip())}</h1><p>metalcore sweep report</p></header>"
        + section("report", "Configurations", content)
        + (section("plot", "Plot", figure) if figure else "")
    )
    write_text(path, page(f"sweep {sweep.root.name}", body, {}, ""))
    return path
