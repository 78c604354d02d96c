"""`python -m pipeline html reports/<EXP>/report.md` -> a self-contained `report.html` next to it.

markdown-it-py (CommonMark + GitHub tables) renders the Markdown; local PNGs are inlined as
`data:image/png;base64,…` and the stylesheet is inline, so the file opens anywhere (mail, a wiki, offline)
and references nothing outside itself. Headings get GitHub-style ids so in-page links (`#checks`) work.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from markdown_it import MarkdownIt

from pipeline.atomic import write_text
from pipeline.errors import UserError

STYLE = """
body { font-family: system-ui, "Noto Sans CJK JP", sans-serif; max-width: 62rem; margin: 2rem auto; padding: 0 1rem;
       line-height: 1.5; color: #1f2328; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #d0d7de; padding: 0.25rem 0.6rem; }
th { background: #f6f8fa; }
code, pre { font-family: ui-monospace, monospace; background: #f6f8fa; }
pre { padding: 0.8rem; overflow-x: auto; }
img { max-width: 100%; }
"""


def slug(text: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped (letters of any script kept), spaces -> '-'."""
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def to_html(markdown: str, base: Path) -> str:
    md = MarkdownIt("commonmark", {"html": True}).enable("table")
    tokens = md.parse(markdown)
    for i, tok in enumerate(tokens):
        if tok.type == "heading_open":
            tok.attrSet("id", slug(tokens[i + 1].content.replace("`", "")))
        for child in tok.children or []:
            if child.type == "image":
                src = str(child.attrGet("src") or "")
                path = base / src
                if src.endswith(".png") and "://" not in src and path.is_file():
                    data = base64.b64encode(path.read_bytes()).decode("ascii")
                    child.attrSet("src", f"data:image/png;base64,{data}")
    body = md.renderer.render(tokens, md.options, {})
    title = next((t.content for t in tokens if t.type == "inline"), "report")
    lang = "ja" if re.search(r"[\u3040-\u30ff\u4e00-\u9fff]", markdown) else "en"
    return (
        f'<!DOCTYPE html>\n<html lang="{lang}">\n<head>\n<meta charset="utf-8">\n'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}</body>\n</html>\n"
    )


def write_html(report: Path) -> Path:
    """report.md -> report.html, report.ja.md -> report.ja.html (same folder)."""
    if not report.is_file():
        raise UserError(f"{report}: no such report (run `make report EXP=…` first)")
    out = report.with_suffix(".html")
    write_text(out, to_html(report.read_text(encoding="utf-8"), report.parent))
    return out
