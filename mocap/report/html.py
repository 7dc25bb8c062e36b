"""The page: one self-contained HTML file (inline CSS, images as base64 data URIs, no script, no links
out of the file except the overlay videos beside it)."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass, field

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:14px 24px}
header h1{margin:0;font-size:22px} header p{margin:4px 0 0;color:#c9cfdb;font-size:13px}
nav{padding:8px 24px;background:#e8ebf0;font-size:13px} nav a{margin-right:14px;color:#24508f}
main{padding:8px 24px 40px;max-width:1320px}
section{background:#fff;border:1px solid #dde1e8;border-radius:6px;margin:14px 0;padding:10px 18px}
h2{font-size:18px;margin:6px 0 10px} h3{font-size:15px;margin:12px 0 6px}
table{border-collapse:collapse;font-size:13px;margin:6px 0 10px}
th,td{border:1px solid #dde1e8;padding:3px 8px;text-align:left} th{background:#f0f2f5}
td.num{text-align:right;font-variant-numeric:tabular-nums}
img.plot{display:block;max-width:100%;margin:6px 0}
.strip{display:flex;gap:6px;flex-wrap:wrap;margin:4px 0 12px} .strip figure{margin:0}
.strip img{height:160px;display:block} .strip figcaption{font-size:11px;color:#555}
.pics{display:flex;flex-wrap:wrap;gap:10px} .pics img.plot{max-width:48%}
.missing{color:#7a5b00;background:#fff6d6;border:1px solid #f0dc9c;padding:8px 12px;border-radius:4px}
.error{color:#8a1020;background:#fde8ea;border:1px solid #f3b7be;padding:8px 12px;border-radius:4px}
ul.warnings li{margin:4px 0} .advice{color:#3b4a63;font-size:13px}
.big{font-size:28px;font-weight:600} .cards{display:flex;gap:14px;flex-wrap:wrap}
.card{border:1px solid #dde1e8;border-radius:6px;padding:8px 14px;min-width:140px}
"""


def esc(text: object) -> str:
    """``text`` escaped for HTML."""
    return html.escape(str(text), quote=True)


def fmt(value: object, digits: int = 3) -> str:
    """A table cell's text: floats rounded, None and NaN as an en dash."""
    if value is None:
        return "–"
    if isinstance(value, float):
        if value != value:  # NaN
            return "–"
        if abs(value) >= 1 and abs(value) < 1e15:  # no exponent for ordinary magnitudes
            whole = len(str(int(abs(value))))
            return f"{value:.{max(digits - whole, 0)}f}"
        return f"{value:.{digits}g}"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], digits: int = 3) -> str:
    """An HTML table; floats shown with ``digits`` decimals."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for v in row:
            num = isinstance(v, int | float) and not isinstance(v, bool)
            cells.append(f"<td{' class=num' if num else ''}>{esc(fmt(v, digits))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def image(data: bytes, alt: str, element_id: str, mime: str = "image/png", css_class: str = "plot") -> str:
    """An embedded image (base64 data URI)."""
    b64 = base64.b64encode(data).decode("ascii")
    return f'<img class="{css_class}" id="{esc(element_id)}" alt="{esc(alt)}" src="data:{mime};base64,{b64}">'


def missing(text: str) -> str:
    """A note that a part of the report is missing, with ``text`` saying why."""
    return f'<p class="missing">{esc(text)}</p>'


def error(text: str) -> str:
    """An error note."""
    return f'<p class="error">{esc(text)}</p>'


@dataclass
class Section:
    """One part of the page: id (anchor), title, body HTML, and whether its stage has run."""

    id: str
    title: str
    body: list[str] = field(default_factory=list)
    ran: bool = True

    def add(self, *parts: str) -> Section:
        """Append HTML parts; returns the section."""
        self.body.extend(parts)
        return self


def page(title: str, subtitle: str, sections: Sequence[Section]) -> str:
    """The whole self-contained HTML page."""
    nav = "".join(f'<a href="#{esc(s.id)}">{esc(s.title)}</a>' for s in sections)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>",
        f"<header><h1>{esc(title)}</h1><p>{esc(subtitle)}</p></header>",
        f"<nav>{nav}</nav><main>",
    ]
    for s in sections:
        state = "" if s.ran else ' data-state="not-run"'
        parts.append(f'<section id="{esc(s.id)}"{state}><h2>{esc(s.title)}</h2>{"".join(s.body)}</section>')
    parts.append("</main></body></html>")
    return "\n".join(parts)
