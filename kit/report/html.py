"""``report.html``: report.md's content in one self-contained file, with sortable, filterable tables.

Figures are inline (base64 PNG), the script and the style are inline, nothing is fetched: the file
opens from a mail attachment or an air-gapped machine. The claim, cell and finding tables carry
every verdict, every cell and every finding; a header click sorts, the selects and the text box
above each table filter it. ``report.html?selftest`` runs the page's own check of its tables
(sort, filter) and writes what it saw into ``<pre id="selftest">`` for a headless browser to read
(tests/test_html.py).
"""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path
from typing import Any

from kit.report import data

_LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)")
_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*([^*]+)\*\*")
_ITALIC = re.compile(r"(?<![*\w])\*([^*\n]+)\*(?![*\w])")


def _inline(text: str, images: dict[str, str]) -> str:
    """Markdown inline markup (already HTML-safe text) to HTML: code, links, images, bold, italics."""
    codes: list[str] = []

    def keep_code(m: re.Match[str]) -> str:
        codes.append(f"<code>{m.group(1)}</code>")
        return f"\x00{len(codes) - 1}\x00"

    text = _CODE.sub(keep_code, text)

    def link(m: re.Match[str]) -> str:
        bang, label, target = m.groups()
        if bang:
            src = images.get(target)
            return f'<img alt="{label}" src="{src}">' if src else f"<em>[figure {label} missing]</em>"
        if target.startswith(("details.md", "report.md")) or target.endswith(".json"):
            return f"<span class=ref>{label}</span>"  # a sibling file: named, not linked (self-contained)
        return f'<a href="{target}">{label}</a>' if target.startswith("#") else label

    text = _LINK.sub(link, text)
    text = _BOLD.sub(r"<strong>\1</strong>", text)
    text = _ITALIC.sub(r"<em>\1</em>", text)
    return re.sub("\x00(\\d+)\x00", lambda m: codes[int(m.group(1))], text)


def _table_cells(line: str) -> list[str]:
    cells = re.split(r"(?<!\\)\|", line.strip()[1:-1])
    return [c.strip().replace("\\|", "|").replace("\\\\", "\\") for c in cells]


def markdown_to_html(text: str, images: dict[str, str]) -> str:
    """The subset of markdown `kit.report.markdown` writes: headings, paragraphs, lists, tables, details."""
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
        elif line.startswith("<details") or line.startswith("</details") or line.startswith("<summary"):
            out.append(line)  # our own markup
            i += 1
        elif m := re.match(r"^(#{1,6}) (.*)$", line):
            level = len(m.group(1))
            title = _inline(html.escape(m.group(2), quote=False), images)
            anchor = re.sub(r"[^a-z0-9]+", "-", m.group(2).lower()).strip("-")
            out.append(f'<h{level} id="{anchor}">{title}</h{level}>')
            i += 1
        elif line.startswith("|"):
            block = []
            while i < len(lines) and lines[i].startswith("|"):
                block.append(lines[i])
                i += 1
            head, rows = _table_cells(block[0]), [_table_cells(r) for r in block[2:]]
            # table cells are already HTML-escaped by `markdown.cell_text`
            parts = ["<table class=md><thead><tr>" + "".join(f"<th>{_inline(h, images)}</th>" for h in head) + "</tr>"]
            parts.append("</thead><tbody>")
            parts += ["<tr>" + "".join(f"<td>{_inline(c, images)}</td>" for c in r) + "</tr>" for r in rows]
            out.append("".join(parts) + "</tbody></table>")
        elif line.startswith("- "):
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                items.append(f"<li>{_inline(html.escape(lines[i][2:], quote=False), images)}</li>")
                i += 1
            out.append("<ul>" + "".join(items) + "</ul>")
        else:
            para = []
            while (
                i < len(lines)
                and lines[i].strip()
                and not lines[i].startswith(("|", "#", "- ", "<details", "</details"))
            ):
                para.append(lines[i])
                i += 1
            out.append(f"<p>{_inline(html.escape(' '.join(para), quote=False), images)}</p>")
    return "\n".join(out)


# ---------------------------------------------------------------- the interactive tables


def _cell_of(v: dict[str, Any]) -> tuple[str, str, str]:
    """(model, path, device) a verdict speaks of: its first cell, else its subject's words."""
    cells = v.get("cells") or []
    if cells and isinstance(cells[0], str) and cells[0].count("/") >= 2:
        model, path, device = cells[0].split("/")[:3]
        return model, path, device
    from kit.models.registry import MODELS

    words = str(v.get("subject") or "").split()
    model = next((w for w in words if w in MODELS), "")
    path = next((w for w in words if w in data.PATH_ORDER), "")
    device = next((w for w in words if w in data.DEVICE_ORDER), "")
    return model, path, device


def claim_rows(verdicts: list[dict[str, Any]], machines: dict[str, str]) -> list[dict[str, Any]]:
    rows = []
    for v in verdicts:
        r = data.verdict_row(v)
        model, path, device = _cell_of(v)
        hw = v.get("hardware") if isinstance(v.get("hardware"), dict) else {}
        machine = ", ".join(e["machine"] for e in v.get("per_machine") or [] if isinstance(e, dict) and "machine" in e)
        machine = machine or (hw or {}).get("ours") or machines.get(device, "")
        rows.append(
            {
                "claim": str(r["claim"]),
                "verdict": r["verdict"],
                "class": str(r["comparability"] or ""),
                "model": model,
                "path": path,
                "machine": str(machine or ""),
                "claimed": _plain(r["claimed"], r["unit"]),
                "measured": _plain(r["measured"], r["unit"]),
                "why": _short(str(r["reason"] or "")),
            }
        )
    return rows


def _short(text: str, limit: int = 320) -> str:
    """A reason cut for the table (the verdict file and details.md keep it whole)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _plain(value: Any, unit: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        text = f"{value:.4g}"
    elif isinstance(value, (list, tuple)):
        text = ", ".join(_plain(x, None) for x in value)
    else:
        text = str(value)
    return f"{text} {unit}" if unit and unit != "count" and isinstance(value, (int, float)) else text


def cell_rows(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    measured = {(r["model"], r["path"], r["device"], r["batch_size"]): r for r in data.measured_rows(docs)}
    rows = []
    for d in data.sort_docs(docs):
        key = data.cell_key(d)
        r = measured.get(key)
        env = d.get("environment") or {}
        gpu = (env.get("gpu") or {}).get("name") if key[2] == "cuda" else None
        machine = f"{gpu or (env.get('cpu') or {}).get('model') or 'unknown'} ({key[2]})"
        rows.append(
            {
                "model": key[0],
                "path": key[1],
                "device": key[2],
                "bs": key[3],
                "status": d.get("status", "?"),
                "machine": machine,
                "p50_ms": None if r is None else round(r["p50_ms"], 4),
                "speedup": None if r is None or r["speedup"] is None else round(r["speedup"], 3),
                "peak_mib": None if r is None else round(r["peak_mb"], 1),
                "cosine": None if r is None else round(r["cosine"], 6),
                "note": "; ".join(r["noise_warnings"]) if r is not None else str(d.get("reason") or ""),
            }
        )
    return rows


def _data_table(
    name: str, rows: list[dict[str, Any]], filters: list[str], numeric: set[str], mixed: frozenset[str] = frozenset()
) -> str:
    """A table the page's script sorts (numeric, text, or ``mixed``: numbers first, by value) and filters."""
    cols = list(rows[0]) if rows else []
    selects = "".join(
        f'<label>{f} <select data-filter="{f}"><option value="">all</option>'
        + "".join(
            f'<option value="{html.escape(str(x))}">{html.escape(str(x))}</option>'
            for x in sorted({str(r[f]) for r in rows if r[f] not in (None, "")})
        )
        + "</select></label> "
        for f in filters
    )
    head = "".join(
        f'<th data-col="{c}" data-type="{"num" if c in numeric else "mixed" if c in mixed else "text"}" '
        f'title="click to sort">{c}</th>'
        for c in cols
    )
    body = []
    for r in rows:
        attrs = " ".join(f'data-{f}="{html.escape(str(r[f]))}"' for f in filters)
        tds = "".join(
            f'<td data-v="{html.escape("" if r[c] is None else str(r[c]))}">'
            f"{html.escape('-' if r[c] is None else str(r[c]))}</td>"
            for c in cols
        )
        body.append(f"<tr {attrs}>{tds}</tr>")
    return (
        f'<div class="filters" data-for="{name}">{selects}<label>text <input type="search" data-text '
        f'placeholder="filter rows"></label> <span class="count"></span></div>'
        f'<table class="data" id="{name}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
    )


_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:1.5em auto;max-width:1400px;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.6em 0;font-size:12.5px}
th,td{border:1px solid #ccc;padding:2px 6px;vertical-align:top;text-align:left}
th{background:#f0f0f0} table.data th{cursor:pointer;user-select:none}
table.data th.asc::after{content:" ▲"} table.data th.desc::after{content:" ▼"}
img{max-width:100%} code{background:#f4f4f4;padding:0 2px} .ref{font-style:italic}
.filters{margin:.8em 0 .2em;position:sticky;top:0;background:#fff;padding:4px 0}
.filters label{margin-right:.8em} .count{color:#555}
tr[data-verdict=fail] td:nth-child(2){color:#b00;font-weight:600}
tr[data-verdict=inconclusive] td:nth-child(2){color:#a60}
tr[data-verdict=pass] td:nth-child(2){color:#070}
#selftest{display:none}
"""

_SCRIPT = r"""
(function(){
function cellValue(tr,i,type){var v=tr.children[i].getAttribute('data-v');
  if(type==='num'){var x=parseFloat(v);return isNaN(x)?Infinity:x;}
  if(type==='mixed'){var y=parseFloat(v);if(!isNaN(y))return [0,y];return [1,v.toLowerCase()];}
  return v.toLowerCase();}
function cmp(x,y){if(Array.isArray(x)){if(x[0]!==y[0])return x[0]-y[0];x=x[1];y=y[1];}return x<y?-1:x>y?1:0;}
function sortBy(table,i,dir){var th=table.tHead.rows[0].cells[i],type=th.getAttribute('data-type');
  var rows=Array.prototype.slice.call(table.tBodies[0].rows);
  rows.sort(function(a,b){return cmp(cellValue(a,i,type),cellValue(b,i,type))*dir;});
  rows.forEach(function(r){table.tBodies[0].appendChild(r);});
  Array.prototype.forEach.call(table.tHead.rows[0].cells,function(c){c.classList.remove('asc','desc');});
  th.classList.add(dir>0?'asc':'desc');}
function applyFilter(bar){var table=document.getElementById(bar.getAttribute('data-for'));
  var sels=bar.querySelectorAll('select[data-filter]'),text=bar.querySelector('input[data-text]').value.toLowerCase();
  var shown=0;Array.prototype.forEach.call(table.tBodies[0].rows,function(tr){var ok=true;
    Array.prototype.forEach.call(sels,function(s){if(s.value&&tr.getAttribute('data-'+s.getAttribute('data-filter'))!==s.value)ok=false;});
    if(ok&&text&&tr.textContent.toLowerCase().indexOf(text)<0)ok=false;
    tr.style.display=ok?'':'none';if(ok)shown++;});
  bar.querySelector('.count').textContent=shown+' of '+table.tBodies[0].rows.length+' rows';return shown;}
document.querySelectorAll('table.data').forEach(function(table){
  Array.prototype.forEach.call(table.tHead.rows[0].cells,function(th,i){th.addEventListener('click',function(){
    sortBy(table,i,th.classList.contains('asc')?-1:1);});});});
document.querySelectorAll('.filters').forEach(function(bar){applyFilter(bar);
  bar.addEventListener('input',function(){applyFilter(bar);});bar.addEventListener('change',function(){applyFilter(bar);});});
function visible(id,col){var t=document.getElementById(id),i=-1;
  Array.prototype.forEach.call(t.tHead.rows[0].cells,function(c,k){if(c.getAttribute('data-col')===col)i=k;});
  return Array.prototype.filter.call(t.tBodies[0].rows,function(r){return r.style.display!=='none';})
    .map(function(r){return r.children[i].getAttribute('data-v');});}
function header(id,col){var t=document.getElementById(id);
  return Array.prototype.filter.call(t.tHead.rows[0].cells,function(c){return c.getAttribute('data-col')===col;})[0];}
if(location.search.indexOf('selftest')>=0){var out={};
  try{
    header('claims','claim').click();out.claims_sorted_by_claim=visible('claims','claim');
    header('claims','claim').click();out.claims_sorted_by_claim_desc=visible('claims','claim');
    var bar=document.querySelector('.filters[data-for=claims]'),sel=bar.querySelector('select[data-filter=verdict]');
    sel.value='fail';sel.dispatchEvent(new Event('change',{bubbles:true}));out.claims_fail=visible('claims','claim');
    out.claims_fail_count_text=bar.querySelector('.count').textContent;
    sel.value='';sel.dispatchEvent(new Event('change',{bubbles:true}));
    var box=bar.querySelector('input[data-text]');box.value='dinov2';
    box.dispatchEvent(new Event('input',{bubbles:true}));
    out.claims_text_dinov2=visible('claims','claim');box.value='';box.dispatchEvent(new Event('input',{bubbles:true}));
    header('cells','p50_ms').click();out.cells_by_p50=visible('cells','p50_ms');
    var cbar=document.querySelector('.filters[data-for=cells]'),csel=cbar.querySelector('select[data-filter=status]');
    csel.value='ok';csel.dispatchEvent(new Event('change',{bubbles:true}));out.cells_ok=visible('cells','status');
    csel.value='';csel.dispatchEvent(new Event('change',{bubbles:true}));
    out.done=true;}catch(e){out.error=String(e);}
  document.getElementById('selftest').textContent=JSON.stringify(out);}
})();
"""


def _images(figures: list[Any]) -> dict[str, str]:
    out = {}
    for f in figures:
        if f.file and Path(f.file).is_file():
            b64 = base64.b64encode(Path(f.file).read_bytes()).decode("ascii")
            out[Path(f.file).name] = f"data:image/png;base64,{b64}"
    return out


def render_html(page: str, results_dir: Path, loaded: Any, verdicts: Any, findings: Any, figures: list[Any]) -> str:
    """The whole page: ``page`` (report.md's markdown) as HTML, then the interactive tables.
    ``verdicts`` and ``findings`` are `kit.report.markdown.SideInput`s."""
    body = markdown_to_html(page, _images(figures))
    machines: dict[str, str] = {}
    if isinstance(verdicts.raw, dict):
        for m in verdicts.raw.get("machines") or []:
            if isinstance(m, dict) and m.get("device") and m.get("ok"):
                machines.setdefault(str(m["device"]), str(m.get("machine", "")))
    parts = [body, "<h2 id=every-claim>Every claim (sortable, filterable)</h2>"]
    if verdicts.items:
        rows = claim_rows(verdicts.items, machines)
        filters = ["verdict", "class", "model", "path", "machine"]
        parts.append(_data_table("claims", rows, filters, set(), frozenset({"claimed", "measured"})))
    else:
        parts.append("<p>No verdicts: run <code>qkit validate</code>.</p>")
    parts.append("<h2 id=every-cell>Every cell (sortable, filterable)</h2>")
    crow = cell_rows(loaded.docs)
    if crow:
        numeric = {"bs", "p50_ms", "speedup", "peak_mib", "cosine"}
        parts.append(_data_table("cells", crow, ["status", "model", "path", "device", "machine"], numeric))
    else:
        parts.append("<p>No result documents.</p>")
    parts.append("<h2 id=every-finding>Every finding (sortable, filterable)</h2>")
    if findings.items:
        frows = [
            {
                "severity": r["severity"],
                "rule": r["rule"],
                "claims": ", ".join(r["claims"]),
                "message": r["message"],
                "evidence": str(r["evidence"]),
            }
            for r in (data.finding_row(f) for f in findings.items)
        ]
        parts.append(_data_table("findings", frows, ["severity", "rule"], set()))
    else:
        parts.append("<p>No findings file: run <code>qkit audit</code>.</p>")
    title = html.escape(f"qkit report: {results_dir}")
    counts = {"claims": len(verdicts.items or []), "cells": len(crow)}
    return (
        f"<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8><title>{title}</title>"
        f"<meta name=viewport content='width=device-width'><style>{_STYLE}</style></head><body>\n"
        + "\n".join(parts)
        + f"\n<pre id=selftest></pre><script>{_SCRIPT}</script>\n"
        + f"<script type=application/json id=counts>{json.dumps(counts)}</script>"
        + "</body></html>\n"
    )
