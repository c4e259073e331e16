"""`GET /`: the status page, server-rendered HTML with inline SVG and no JavaScript.

It shows, for people rather than for Prometheus: the cache hit ratio and the
upstream bytes saved (all time and over the last hour, with a column per
minute), stored bytes by kind against the bound on them, the downloads in
flight with their progress, repositories and distributions, and the recent
tasks with their state and warnings. Every figure but the downloads in flight
describes the whole deployment and comes from the database (every server
process adds its traffic there: `lazyreg.observe.shared`), so every node
shows the same page; the downloads are this process's, and the page says so.
With auth on it needs a login (any user: it shows what the API lets a viewer
read), by the form of `lazyreg.observe.login`, never by a Basic challenge.

Bounded: one database round trip of a few queries whose lists are cut at a
fixed length (`lazyreg.observe.queries`), at most MAX_DOWNLOADS downloads,
and fixed-size pictures, so the page costs the same with 10 or 50,000
repositories. Figures carry exact values in `data-` attributes for scripts
and tests. Every text from the database is escaped.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape

from aiohttp import web

import lazyreg
from lazyreg.db import traffic
from lazyreg.observe import shared
from lazyreg.observe.keys import METRICS
from lazyreg.observe.login import HEADERS as LOGIN_HEADERS
from lazyreg.observe.login import logout_form, page_identity, see_other
from lazyreg.observe.queries import KINDS, LIST_ROWS, Snapshot, TaskRow, snapshot
from lazyreg.observe.svg import Part, bar, columns
from lazyreg.observe.traffic import Traffic
from lazyreg.state import state

MAX_DOWNLOADS = 20
HIT, JOIN, MISS = "#3a9d5d", "#8bc34a", "#e08a2c"
KIND_COLORS = {"manifest": "#7b61c9", "config": "#2b7bba", "layer": "#3a9d5d"}
STATE_COLORS = {"completed": "#3a9d5d", "failed": "#c83c3c", "canceled": "#7f7f7f",
                "running": "#2b7bba", "waiting": "#b59a2c"}
HEADERS = {
    **LOGIN_HEADERS,
    # No script runs here, nothing is loaded from elsewhere, no other site frames it.
    "Content-Security-Policy": ("default-src 'none'; style-src 'unsafe-inline'; img-src data:;"
                                " form-action 'self'; frame-ancestors 'none'"),
}


@dataclass(frozen=True)
class Download:
    digest: str
    size: int
    landed: int


@dataclass(frozen=True)
class Page:
    version: str
    database: str
    worker: str
    started: float  # epoch seconds
    now: float
    overall: Traffic
    last_hour: Traffic
    minutes: list[Traffic]  # oldest first
    snapshot: Snapshot
    downloads: list[Download]  # at most MAX_DOWNLOADS
    downloads_total: int
    bound: int | None  # bytes stored blobs may take (max_cache_bytes), or None
    logout: str = ""  # the logout form's HTML, with a session


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _bytes(n: int, element_id: str = "") -> str:
    ident = f' id="{element_id}"' if element_id else ""
    return (f'<span{ident} class="bytes" data-bytes="{n}" title="{n:,} bytes">'
            f"{human_bytes(n)}</span>")


def _ratio(t: Traffic, element_id: str) -> str:
    r = t.hit_ratio
    text = "n/a" if r is None else f"{r * 100:.1f}%"
    data = "" if r is None else f"{r:.6f}"
    return f'<span id="{element_id}" class="ratio" data-ratio="{data}">{text}</span>'


def _duration(seconds: float) -> str:
    s = int(seconds)
    if s < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def _when(value: datetime | None) -> str:
    if value is None:
        return ""
    if value.tzinfo is None:  # SQLite hands back naive datetimes, written in UTC
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _traffic_row(label: str, t: Traffic, key: str) -> str:
    hit_bar = bar([Part(t.hits, HIT, f"{t.hits} hits"), Part(t.joins, JOIN, f"{t.joins} joins"),
                   Part(t.misses, MISS, f"{t.misses} misses")],
                  t.requests, width=160, label=f"hit ratio {label}")
    return (f"<tr><th>{label}</th><td>{_ratio(t, f'hit-ratio-{key}')}</td><td>{hit_bar}</td>"
            f'<td id="hits-{key}" data-count="{t.hits}">{t.hits:,}</td>'
            f'<td id="joins-{key}" data-count="{t.joins}">{t.joins:,}</td>'
            f'<td id="misses-{key}" data-count="{t.misses}">{t.misses:,}</td>'
            f"<td>{_bytes(t.saved_bytes, f'saved-{key}')}</td>"
            f"<td>{_bytes(t.fetched_bytes, f'fetched-{key}')}</td></tr>")


def _cache(page: Page) -> str:
    hits = columns([[Part(m.hits, HIT, f"{m.hits} hits"), Part(m.joins, JOIN, f"{m.joins} joins"),
                     Part(m.misses, MISS, f"{m.misses} misses")] for m in page.minutes],
                   label="blob GETs per minute, last hour")
    saved = columns([[Part(m.saved_bytes, HIT, f"{human_bytes(m.saved_bytes)} saved"),
                      Part(m.fetched_bytes, MISS, f"{human_bytes(m.fetched_bytes)} from upstream")]
                     for m in page.minutes], label="blob bytes per minute, last hour")
    since = datetime.fromtimestamp(page.started, UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<section id="cache"><h2>Cache (every server process)</h2>
<table><tr><th></th><th>hit ratio</th><th></th><th>hits</th><th>joins</th><th>misses</th>
<th>upstream bytes saved</th><th>fetched upstream</th></tr>
{_traffic_row("last hour", page.last_hour, "hour")}
{_traffic_row("all time", page.overall, "overall")}
</table>
<p class="pictures"><span>blob GETs per minute, last hour {hits}</span>
<span>bytes per minute {saved}</span>
<span><span class="swatch" style="background:{HIT}"></span>from storage
<span class="swatch" style="background:{JOIN}"></span>joined a download
<span class="swatch" style="background:{MISS}"></span>from the upstream</span></p>
<p class="note">A hit is a blob GET answered from storage; a join one that joined a download
already in flight (on this node or another); a miss one that started a download from the
upstream. The hit ratio counts hits and joins; bytes saved are the bytes sent from storage and
from joined downloads. These figures are those of every server process sharing this
database (each adds its own every few seconds), so every node shows the same.
This process (<code>{escape(page.worker)}</code>) started {since}, up
{_duration(page.now - page.started)}; its own figures are its
<a href="/metrics">/metrics</a>.</p>
</section>"""


def _storage(page: Page) -> str:
    stored = page.snapshot.stored
    total = sum(b for _, b in stored.values())
    parts = [Part(stored[k][1], KIND_COLORS[k], f"{k}: {human_bytes(stored[k][1])}") for k in KINDS]
    if page.bound is None:
        scale, bound_text = float(total), "no bound (no <code>max_cache_bytes</code> setting)"
    else:
        scale = float(max(page.bound, total))
        share = total / page.bound * 100 if page.bound else 100.0
        bound_text = f'{_bytes(page.bound, "bound")} ({share:.0f}% used)'
    rows = "".join(
        f'<tr><th><span class="swatch" style="background:{KIND_COLORS[k]}"></span>{k}</th>'
        f'<td id="stored-{k}-count" data-count="{stored[k][0]}">{stored[k][0]:,}</td>'
        f"<td>{_bytes(stored[k][1], f'stored-{k}')}</td></tr>" for k in KINDS)
    count = sum(c for c, _ in stored.values())
    return f"""<section id="storage"><h2>Stored</h2>
<p>{bar(parts, scale, width=480, height=18, label="stored bytes by kind")}</p>
<table><tr><th>kind</th><th>artifacts</th><th>bytes</th></tr>{rows}
<tr class="total"><th>total</th><td id="stored-count" data-count="{count}">{count:,}</td>
<td>{_bytes(total, "stored-total")}</td></tr></table>
<p>Bound: {bound_text}</p></section>"""


def _downloads(page: Page) -> str:
    if not page.downloads:
        return ('<section id="downloads"><h2>Downloads in flight on this process (0)</h2>'
                "<p>None: every blob asked for lately was stored.</p></section>")
    rows = "".join(
        f"<tr><td><code>{escape(d.digest[:19])}…</code></td>"
        f"<td>{bar([Part(d.landed, HIT, human_bytes(d.landed))], d.size, width=200)}</td>"
        f'<td data-landed="{d.landed}" data-size="{d.size}">{human_bytes(d.landed)} of'
        f" {human_bytes(d.size)} ({d.landed / d.size * 100 if d.size else 100:.0f}%)</td></tr>"
        for d in page.downloads)
    more = (f"<p>… and {page.downloads_total - len(page.downloads)} more.</p>"
            if page.downloads_total > len(page.downloads) else "")
    return (f'<section id="downloads"><h2>Downloads in flight on this process'
            f" ({page.downloads_total})</h2>"
            f"<table><tr><th>blob</th><th>progress</th><th></th></tr>{rows}</table>{more}"
            "</section>")


def _more(shown: int, total: int, what: str, path: str) -> str:
    if total <= shown:
        return ""
    return (f'<p class="note">Showing the first {shown} of {total:,} {what} by name;'
            f' all of them: <a href="{path}">{path}</a>.</p>')


def _repositories(snap: Snapshot) -> str:
    more = _more(len(snap.repository_rows), snap.repositories, "repositories",
                 "/api/v1/repositories/")
    rows = "".join(f"<tr><td>{escape(r.name)}</td><td>{r.latest_version}</td>"
                   f"<td>{escape(r.description)}</td></tr>" for r in snap.repository_rows)
    return (f'<section id="repositories"><h2>Repositories (<span id="repository-count">'
            f"{snap.repositories:,}</span>)</h2>"
            f"<table><tr><th>name</th><th>latest version</th><th>description</th></tr>{rows}"
            f"</table>{more}"
            "</section>")


def _distributions(snap: Snapshot) -> str:
    more = _more(len(snap.distribution_rows), snap.distributions, "distributions",
                 "/api/v1/distributions/")
    rows = "".join(f"<tr><td>{escape(d.name)}</td><td><code>{escape(d.base_path)}</code></td>"
                   f"<td>{escape(d.serves)}</td>"
                   f"<td>{'private' if d.private else 'public'}</td></tr>"
                   for d in snap.distribution_rows)
    return (f'<section id="distributions"><h2>Distributions ({snap.distributions:,})</h2>'
            f"<table><tr><th>name</th><th>base path</th><th>serves</th><th></th></tr>{rows}"
            f"</table>{more}"
            "</section>")


def _task(t: TaskRow) -> str:
    took = ""
    if t.started and t.finished:
        took = _duration((t.finished - t.started).total_seconds())
    color = STATE_COLORS.get(t.state, "#7f7f7f")
    notes = "".join(f'<li class="warning">{escape(w)}</li>' for w in t.warnings)
    if t.warning_count > len(t.warnings):
        notes += f"<li>… {t.warning_count - len(t.warnings)} more warnings</li>"
    if t.error:
        notes = f'<li class="error">{escape(t.error)}</li>' + notes
    return (f"<tr><td>{_when(t.created)}</td><td>{escape(t.kind)}</td><td>{escape(t.subject)}</td>"
            f'<td><span class="state" style="background:{color}">{escape(t.state)}</span></td>'
            f"<td>{took}</td><td>{t.warning_count}</td><td><ul>{notes}</ul></td></tr>")


def _tasks(snap: Snapshot) -> str:
    if not snap.task_rows:
        return '<section id="tasks"><h2>Recent tasks</h2><p>None yet.</p></section>'
    rows = "".join(_task(t) for t in snap.task_rows)
    return ('<section id="tasks"><h2>Recent tasks</h2><table><tr><th>created (UTC)</th>'
            "<th>kind</th><th>on</th><th>state</th><th>took</th><th>warnings</th><th></th></tr>"
            f'{rows}</table><p class="note">All tasks: <a href="/api/v1/tasks/">/api/v1/tasks/</a>'
            "</p></section>")


STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em auto;max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.5em;margin:0}h2{font-size:1.1em;margin:1.4em 0 .4em;border-bottom:1px solid #ddd}
header p{margin:.2em 0;color:#555}table{border-collapse:collapse}
th,td{padding:.2em .7em .2em 0;text-align:left;vertical-align:top}
td[data-count]{text-align:right}.note{color:#666;font-size:.9em}
.pictures span{display:inline-block;margin-right:2em;color:#555}svg{vertical-align:middle}
.swatch{display:inline-block;width:.8em;height:.8em;margin-right:.4em}
.state{color:#fff;padding:0 .4em;border-radius:3px}ul{margin:0;padding-left:1em}
.error{color:#a22}.warning{color:#8a6d00}tr.total th,tr.total td{border-top:1px solid #ccc}
footer{margin-top:2em;color:#666;font-size:.9em}
"""


def _count(n: int, one: str, many: str = "") -> str:
    return f"{n:,} {one if n == 1 else (many or one + 's')}"


def render(page: Page) -> str:
    snap = page.snapshot
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>lazyreg status</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="30"><style>{STYLE}</style></head>
<body><header><h1>lazyreg</h1>
<p>version {escape(page.version)} · database {escape(page.database)} · process
<code>{escape(page.worker)}</code> · {_count(snap.remotes, "remote")},
{_count(snap.repositories, "repository", "repositories")},
{_count(snap.distributions, "distribution")}</p></header>
{_cache(page)}
{_storage(page)}
{_downloads(page)}
{_repositories(snap)}
{_distributions(snap)}
{_tasks(snap)}
<footer><a href="/metrics">/metrics</a> · <a href="/readyz">/readyz</a> ·
<a href="/api/v1/openapi.json">/api/v1/openapi.json</a> · refreshed every 30 s ·
{_when(datetime.fromtimestamp(page.now, UTC))} UTC {page.logout}</footer>
</body></html>
"""


def _downloads_of(progress: Sequence[tuple[str, int, int]]) -> list[Download]:
    return [Download(digest, size, landed) for digest, size, landed in progress[:MAX_DOWNLOADS]]


async def status_page(request: web.Request) -> web.Response:
    metrics = request.app[METRICS]
    app = state(request)
    if app.auth.enabled and await page_identity(request) is None:
        return see_other("/login")  # a form, never a Basic challenge a browser would keep
    await shared.flush(request.app)  # this process's latest requests count too
    now = time.time()
    snap, (overall, minutes) = await app.services.db.read(
        lambda s: (snapshot(s), traffic.read(s, int(now // 60))))
    last_hour = Traffic()
    for minute in minutes:
        last_hour.add(minute)
    progress = app.fetcher.progress()
    settings = app.services.settings
    page = Page(
        version=lazyreg.__version__,
        database="SQLite" if app.services.db.is_sqlite else "PostgreSQL",
        worker=app.services.worker_id, started=metrics.started, now=now,
        overall=overall, last_hour=last_hour, minutes=minutes, snapshot=snap,
        downloads=_downloads_of(progress), downloads_total=len(progress),
        bound=getattr(settings, "max_cache_bytes", None), logout=logout_form(request))
    return web.Response(text=render(page), content_type="text/html", headers=HEADERS)


__all__ = ["LIST_ROWS", "Page", "render", "status_page"]
