"""The report as plain blocks (headings, text, tables, figures, answers), written as self-contained HTML and as
Markdown."""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Swatch:
    """A colour cell: a square of ``rgb`` in HTML, its hex code in Markdown."""

    rgb: tuple[int, int, int]

    @property
    def hex(self) -> str:
        return "#{:02x}{:02x}{:02x}".format(*self.rgb)


@dataclass
class Heading:
    """A heading at HTML level ``level`` (sections are level 2)."""

    text: str
    level: int = 3
    topic: str = ""  # what the block shows, for the question it answers (``report.answers``): "accuracy"...


@dataclass
class Text:
    """A paragraph of plain text."""

    text: str
    note: bool = False  # smaller, grey: where a number comes from, what it cannot be compared with
    topic: str = ""


@dataclass
class Markdown:
    """The student's words as Markdown: rendered in the page (raw HTML shown as text), kept as is in report.md."""

    text: str


SAFE_LINKS = ("http://", "https://", "mailto:", "#")  # where a link in an answer may point; others lose their link


def markdown_html(text: str) -> str:
    """Render ``text`` (an answer) as HTML with Python-Markdown: tables, fenced code, lists and emphasis.

    Raw HTML is not passed through but shown as text, and a link or image whose address is not http(s), mailto or
    an anchor (``javascript:``) is kept as its text, so that nothing in an answer runs when the page is opened.
    """
    import markdown
    from markdown.treeprocessors import Treeprocessor

    class DropUnsafeLinks(Treeprocessor):
        def run(self, root):
            for element in root.iter():
                for attribute in ("href", "src"):
                    value = element.get(attribute)
                    if value is not None and not value.strip().lower().startswith(SAFE_LINKS):
                        del element.attrib[attribute]

    md = markdown.Markdown(extensions=["tables", "fenced_code", "sane_lists"])
    md.preprocessors.deregister("html_block")  # raw HTML blocks become text
    md.inlinePatterns.deregister("html")  # and so do inline tags
    md.treeprocessors.register(DropUnsafeLinks(md), "drop_unsafe_links", 0)
    return md.convert(text)


@dataclass
class Table:
    """A table with an optional caption; the ``marked`` rows stand out."""

    columns: list[str]
    rows: list[list]  # str, int, float (shown with ``digits``), None (shown as a dash) or Swatch
    caption: str = ""
    digits: int = 4
    marked: frozenset = frozenset()  # indices of rows to stand out (ours, beside the course's)
    topic: str = ""


@dataclass
class Figure:
    """A PNG figure with its caption."""

    path: Path  # a PNG inside the report's figures/ folder
    caption: str
    topic: str = ""


def about(topic: str, blocks: list) -> list:
    """Return ``blocks``, each marked as showing ``topic`` (``accuracy``, ``recipe:model_a``...)."""
    for block in blocks:
        block.topic = topic
    return blocks


@dataclass
class Section:
    """A section of the report: its title, its anchor in the page and its blocks."""

    title: str
    anchor: str
    blocks: list = field(default_factory=list)


def cell_text(value, digits: int) -> str:
    """Return a table cell's text: a dash for None or NaN, yes/no, ``1,234``, a float to ``digits`` places."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    if isinstance(value, Swatch):
        return value.hex
    return str(value)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


STYLE = """
:root { --ink: #1f2328; --muted: #59636e; --rule: #d1d9e0; --band: #f6f8fa; --accent: #0b5cad; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--ink); background: #fff;
  font: 15px/1.55 -apple-system, "Segoe UI", "Helvetica Neue", Arial, "Noto Sans", sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 28px 32px 64px; }
h1 { font-size: 28px; margin: 0 0 4px; letter-spacing: -0.01em; }
h2 { font-size: 22px; margin: 44px 0 10px; padding-bottom: 6px; border-bottom: 2px solid var(--rule); }
h3 { font-size: 17px; margin: 28px 0 8px; }
h4 { font-size: 15px; margin: 20px 0 6px; color: var(--muted); }
p { margin: 6px 0 10px; max-width: 78ch; }
p.note { color: var(--muted); font-size: 13px; }
nav { background: var(--band); border: 1px solid var(--rule); border-radius: 6px; padding: 10px 16px; margin: 16px 0; }
nav a { color: var(--accent); text-decoration: none; margin-right: 18px; }
.meta { color: var(--muted); font-size: 13px; }
.table-wrap { overflow-x: auto; margin: 8px 0 14px; }
table { border-collapse: collapse; font-size: 13.5px; font-variant-numeric: tabular-nums; }
p.caption { color: var(--muted); font-size: 13px; margin: 14px 0 2px; }
tr.mark td { background: #eaf3fc; font-weight: 600; }
th, td { padding: 4px 10px; border-bottom: 1px solid var(--rule); vertical-align: top; }
th { text-align: left; background: var(--band); font-weight: 600; border-bottom: 2px solid var(--rule); }
th.num, td.num { text-align: right; white-space: nowrap; }
tbody tr:hover { background: #fafbfc; }
.swatch { display: inline-block; width: 14px; height: 14px; border: 1px solid #777; vertical-align: -2px;
  margin-right: 6px; border-radius: 2px; }
figure { margin: 12px 0 22px; }
.answer pre { background: var(--band); padding: 8px 10px; overflow-x: auto; border-radius: 4px; }
.answer code { font-family: ui-monospace, monospace; font-size: 13px; }
.answer table td, .answer table th { border: 1px solid var(--rule); padding: 3px 8px; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--rule); border-radius: 4px; display: block; }
figcaption { color: var(--muted); font-size: 13px; margin-top: 4px; max-width: 90ch; }
@page { size: A4; margin: 14mm 12mm; }
@media print {
  body { font-size: 11.5px; }
  main { max-width: none; padding: 0; }
  h2 { break-before: page; margin-top: 0; }
  nav + h2 { break-before: auto; }  /* the first section follows the title and byline on page one */
  h2, h3, h4, p.caption { break-after: avoid; }
  figure, table, tr, .table-wrap { break-inside: avoid; }
  .table-wrap { overflow: visible; }
  table { font-size: 10.5px; }
  figure img { width: auto !important; max-width: 100%; max-height: 230mm; }
  tbody tr:hover { background: none; }
}
"""


def _html_cell(value, digits: int, tag: str) -> str:
    cls = ' class="num"' if _is_number(value) else ""
    if isinstance(value, Swatch):
        body = f'<span class="swatch" style="background:{value.hex}"></span>{value.hex}'
    else:
        body = html.escape(cell_text(value, digits))
    return f"<{tag}{cls}>{body}</{tag}>"


def _html_table(table: Table) -> str:
    numeric = [all(_is_number(r[i]) or r[i] is None for r in table.rows)
               and any(_is_number(r[i]) for r in table.rows) for i in range(len(table.columns))]
    head = "".join(f'<th{" class=num" if n else ""}>{html.escape(c)}</th>' for c, n in zip(table.columns, numeric))
    body = "\n".join(("<tr class=mark>" if i in table.marked else "<tr>")
                     + "".join(_html_cell(v, table.digits, "td") for v in row) + "</tr>"
                     for i, row in enumerate(table.rows))
    caption = f'<p class="caption">{html.escape(table.caption)}</p>' if table.caption else ""
    return (f'{caption}<div class="table-wrap"><table><thead><tr>{head}</tr></thead>\n'
            f'<tbody>{body}</tbody></table></div>')


def png_width(path: Path) -> int:
    """Return the pixel width in a PNG file's header."""
    with open(path, "rb") as handle:
        header = handle.read(24)
    return int.from_bytes(header[16:20], "big")


DISPLAY_SCALE = 0.62  # figures are drawn at 150 dpi; shown near 93 dpi they read like the page's text


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def render_html(title: str, meta: str, sections: list[Section]) -> str:
    """Render the report as one self-contained HTML page: title, byline, link bar and sections, figures inlined."""
    parts = [f"<h1>{html.escape(title)}</h1>", f'<p class="meta">{html.escape(meta)}</p>']
    if sections:
        links = "".join(f'<a href="#{s.anchor}">{html.escape(s.title)}</a>' for s in sections)
        parts.append(f"<nav>{links}</nav>")
    for section in sections:
        parts.append(f'<h2 id="{section.anchor}">{html.escape(section.title)}</h2>')
        for block in section.blocks:
            if isinstance(block, Heading):
                parts.append(f"<h{block.level}>{html.escape(block.text)}</h{block.level}>")
            elif isinstance(block, Text):
                parts.append(f'<p{" class=note" if block.note else ""}>{html.escape(block.text)}</p>')
            elif isinstance(block, Markdown):
                parts.append(f'<div class="answer">{markdown_html(block.text)}</div>')
            elif isinstance(block, Table):
                parts.append(_html_table(block))
            elif isinstance(block, Figure):
                width = round(png_width(block.path) * DISPLAY_SCALE)
                parts.append(f'<figure><img src="{_data_uri(block.path)}" style="width:{width}px" '
                             f'alt="{html.escape(block.caption)}">'
                             f"<figcaption>{html.escape(block.caption)}</figcaption></figure>")
    body = "\n".join(parts)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n"
            f"<body><main>\n{body}\n</main></body>\n</html>\n")


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(title: str, meta: str, sections: list[Section], root: Path) -> str:
    """Render the report as Markdown, its figures linked relative to ``root`` (the report folder)."""
    lines = [f"# {title}", "", f"_{meta}_", ""]
    for section in sections:
        lines += [f"## {section.title}", ""]
        for block in section.blocks:
            if isinstance(block, Heading):
                lines += [f"{'#' * block.level} {block.text}", ""]
            elif isinstance(block, Text):
                lines += [f"_{block.text}_" if block.note else block.text, ""]
            elif isinstance(block, Markdown):
                lines += [block.text, ""]
            elif isinstance(block, Table):
                if block.caption:
                    lines += [f"**{_md_escape(block.caption)}**", ""]
                lines.append("| " + " | ".join(_md_escape(c) for c in block.columns) + " |")
                aligns = ["---:" if any(_is_number(r[i]) for r in block.rows) else "---"
                          for i in range(len(block.columns))]
                lines.append("| " + " | ".join(aligns) + " |")
                for i, row in enumerate(block.rows):
                    cells = [_md_escape(cell_text(v, block.digits)) for v in row]
                    if i in block.marked:
                        cells = [f"**{c}**" if c else c for c in cells]
                    lines.append("| " + " | ".join(cells) + " |")
                lines.append("")
            elif isinstance(block, Figure):
                relative = block.path.relative_to(root).as_posix()
                lines += [f"![{_md_escape(block.caption)}]({relative})", "", f"_{block.caption}_", ""]
    return "\n".join(lines)
