"""Rendering of the reports (§26, §32): a printable Chinese HTML page, one CSV, an XLSX workbook.

A report is a JSON document plus a :class:`Layout` naming its header fields, its summary figures
and its tables; the three formats carry the same figures (the English key stays in CSV/XLSX/JSON).
"""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from dashboard.auth import require
from dashboard.billing_common import download

REPORT_CSS = """body { font-family: "Microsoft YaHei", "PingFang SC", "Noto Sans CJK SC", "WenQuanYi Micro Hei",
  system-ui, sans-serif; margin: 2rem; color: #111; background: #fff; }
h1 { font-size: 1.6rem; margin: 0 0 .3rem; } h2 { font-size: 1.2rem; margin: 1.6rem 0 .4rem; }
.meta { color: #444; margin: 0 0 1rem; } .en { color: #666; font-size: .85em; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; font-size: .9rem; }
th, td { border: 1px solid #999; padding: .25rem .5rem; text-align: left; } th { background: #eee; }
td.n { text-align: right; }
@media print { body { margin: 1cm; } h2 { break-after: avoid; } tr { break-inside: avoid; } }
"""


@dataclass(frozen=True)
class Layout:
    """What a report shows: header keys, summary figures (key, Chinese label) and tables."""

    header: tuple[str, ...]
    summary: tuple[tuple[str, str], ...]
    tables: tuple[tuple[str, str, str, tuple[str, ...]], ...]  # (key, Chinese title, English title, columns)
    columns_zh: Mapping[str, str]
    after_summary: Callable[[dict[str, Any]], list[str]] | None = field(default=None)  # extra HTML sections


def cell(v: Any) -> str:
    """One HTML table cell: numbers right-aligned, floats with one decimal (no Float32 noise on paper)."""
    cls = ' class="n"' if isinstance(v, (int, float)) and not isinstance(v, bool) else ""
    text = f"{v:.1f}" if isinstance(v, float) else "" if v is None else str(v)
    return f"<td{cls}>{html.escape(text)}</td>"


def report_html(doc: dict[str, Any], layout: Layout, inline_css: bool = False) -> str:
    """A printable HTML page (Chinese, with the period and the generation time); every value escaped.

    Served pages link the stylesheet (the CSP forbids inline style); files carry it inline."""
    esc = html.escape
    style = (f"<style>{REPORT_CSS}</style>" if inline_css
             else '<link rel="stylesheet" href="/api/v1/reports/report.css">')  # fmt: skip
    cut = f" · {esc(doc['period_note'])}" if doc.get("period_note") else ""
    meta = (f'<p class="meta">报告期 {esc(doc["from"])} 至 {esc(doc["to"])}（北京时间）· 生成时间 {esc(doc["generated_at"])}'
            f'{cut} <span class="en">{esc(doc["title_en"])}, {esc(doc["from"])} – {esc(doc["to"])}</span></p>')
    out = [f'<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>{esc(doc["title"])}</title>',
           f"{style}</head><body>", f"<h1>{esc(doc['title'])}</h1>", meta,
           '<h2>概要 <span class="en">summary</span></h2><table>']  # fmt: skip
    out += [f"<tr><th>{esc(zh)}</th>{cell(doc['summary'][k])}</tr>" for k, zh in layout.summary]
    out.append("</table>")
    if layout.after_summary:
        out += layout.after_summary(doc)
    for key, zh, en, cols in layout.tables:
        out.append(f'<h2>{esc(zh)} <span class="en">{esc(en)}</span></h2><table><tr>')
        out += [f"<th>{esc(layout.columns_zh.get(c, c))}</th>" for c in cols]
        out.append("</tr>")
        out += ["<tr>" + "".join(cell(r.get(c)) for c in cols) + "</tr>" for r in doc[key]]
        if not doc[key]:
            out.append(f'<tr><td colspan="{len(cols)}">无 / none</td></tr>')
        out.append("</table>")
    out.append("</body></html>")
    return "\n".join(out)


def report_csv(doc: dict[str, Any], layout: Layout) -> str:
    """One CSV: a header block, the summary, then each table (first column: section)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["section", "key", "value"])
    for k in layout.header:
        w.writerow(["report", k, "" if doc[k] is None else doc[k]])
    for k, _ in layout.summary:
        w.writerow(["summary", k, "" if doc["summary"][k] is None else doc["summary"][k]])
    for key, _, _, cols in layout.tables:
        w.writerow([])
        w.writerow([key, *cols])
        for r in doc[key]:
            w.writerow([key, *("" if r.get(c) is None else r.get(c) for c in cols)])
    return "\ufeff" + buf.getvalue()


def report_xlsx(doc: dict[str, Any], layout: Layout) -> bytes:
    """An XLSX workbook: 概要 (report header and summary) and one sheet per table."""
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "概要 Summary"
    ws.append([doc["title"]])
    for k in layout.header:
        ws.append([k, doc[k]])
    ws.append([])
    for k, zh in layout.summary:
        ws.append([zh, doc["summary"][k], k])
    for key, zh, _, cols in layout.tables:
        sheet = wb.create_sheet(zh[:31])
        sheet.append(list(cols))
        for r in doc[key]:
            sheet.append([r.get(c) for c in cols])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def render(doc: dict[str, Any], layout: Layout, fmt: str, inline_css: bool = False) -> str | bytes:
    """The report in one format: html, csv, xlsx or json (bytes)."""
    if fmt == "html":
        return report_html(doc, layout, inline_css)
    if fmt == "csv":
        return report_csv(doc, layout)
    if fmt == "xlsx":
        return report_xlsx(doc, layout)
    return orjson.dumps(doc)


@require()
async def report_css(request: Request) -> Response:
    """The report page's print style (served here: the CSP allows no inline style)."""
    return Response(REPORT_CSS, media_type="text/css")


def report_response(doc: dict[str, Any], layout: Layout, fmt: str, name: str) -> Response:
    """The HTTP answer: the printable page, a CSV or XLSX download (``name.<fmt>``), or the JSON."""
    if fmt == "html":
        return HTMLResponse(report_html(doc, layout))
    if fmt in ("csv", "xlsx"):
        return download(render(doc, layout, fmt), fmt, name)
    return JSONResponse(doc)
