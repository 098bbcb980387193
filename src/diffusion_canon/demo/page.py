"""The gallery's HTML: one static page, every text escaped, images referenced by relative paths so the output folder
can be moved or served as it is."""

from __future__ import annotations

import html

from .section import DemoSection

__all__ = ["error_html", "note_html", "page_html", "section_html"]


def section_html(section: DemoSection, seconds: float) -> str:
    """A section as ``<section>``: title, description, figures, table, and the seconds it took to build."""
    parts = [f"<section><h2>{html.escape(section.title)}</h2>", f"<p>{html.escape(section.description)}</p>"]
    for path, caption in section.images:
        image = f'<img src="{html.escape(path)}" alt="{html.escape(caption)}">'
        parts.append(f"<figure>{image}<figcaption>{html.escape(caption)}</figcaption></figure>")
    if section.table:
        header, *rows = section.table
        parts.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows]
        parts.append("</table>")
    parts.append(f'<p class="time">built in {seconds:.1f} s</p></section>')
    return "\n".join(parts)


def error_html(provider: str, error: str) -> str:
    """The box that takes a failed provider's place: its name and traceback, never a silently missing section."""
    title = f"{html.escape(provider)} failed"
    return f'<section class="error"><h2>{title}</h2><pre>{html.escape(error)}</pre></section>'


def note_html(title: str, text: str) -> str:
    """A plain box: what this run left out and how to build it."""
    return f'<section class="note"><h2>{html.escape(title)}</h2><p>{html.escape(text)}</p></section>'


def page_html(blocks: list[str]) -> str:
    """index.html around the section blocks."""
    return _PAGE.format(body="\n".join(blocks))


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>diffusion-canon demo</title>
<style>
body {{ font-family: sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }}
section {{ border-top: 1px solid #ccc; padding: 1em 0; }}
figure {{ display: inline-block; margin: 0 1em 1em 0; vertical-align: top; }}
img {{ image-rendering: pixelated; max-width: 100%; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; }}
.error pre {{ background: #fee; padding: 1em; overflow: auto; }} .time {{ color: #888; font-size: small; }}
</style></head><body>
<h1>diffusion-canon</h1>
<p>The classic diffusion papers, implemented exactly, as a diffusers extension. Built by <code>make demo</code>.</p>
{body}
</body></html>
"""
