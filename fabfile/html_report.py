"""The run report: one self-contained HTML file per rollback, reset or fleet batch (inline CSS and
SVG, no script, no network), for the ticket after an incident.

It renders :class:`~.procedures.HostResult` objects: ``.site .task .ok .summary .seconds
.next_step .error .code .checks .audit_log`` and ``.data`` with

- ``"plan"``: ``[{"key", "title", "commands": [str]}]`` (commands already redacted by the runner);
- ``"timeline"``: ``[{"key", "title", "started", "ended" (ISO-8601 UTC), "seconds", "downtime"
  (the stack's writers are down during it), "ok", "error"}]``;
- ``"copies"``: ``[{"what", "path", "size", "sha256"}]``;
- a rehearsal's report (task ``rehearse``): ``"predicted_downtime"``, ``"downtime_measured"``,
  ``"downtime_estimated"``, ``"restart_measured"``, ``"restart_estimate"``, ``"tables"``
  (``[{"table", "before", "after", "kept", "lost"}]``), ``"peak_disk"``, ``"disk_needed"``,
  ``"checks"`` (``[{"name", "expected", "actual", "ok"}]``, on the throwaway), ``"not_rehearsed"``.

Whatever is missing or malformed shows as "not recorded": a report never fails a run.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

from . import restart_estimate
from .report import human_size
from .runner import default_log_dir

NOT_RECORDED = "not recorded"
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#1d232a;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 6px;padding-top:12px;border-top:2px solid #d8dee4}
h3{font-size:15px;margin:18px 0 6px}.muted{color:#57606a}.nr{color:#8c959f;font-style:italic}
table{border-collapse:collapse;margin:6px 0 10px}th,td{border:1px solid #d0d7de;padding:3px 8px;text-align:left;
vertical-align:top}th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#1a7f37;font-weight:600}.fail{color:#cf222e;font-weight:600}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;color:#fff;font-size:12px;vertical-align:middle}
.badge.ok{background:#1a7f37;color:#fff}.badge.fail{background:#cf222e;color:#fff}
.next{border-left:4px solid #cf222e;background:#fff5f5;padding:8px 12px;margin:8px 0}
pre{background:#f6f8fa;padding:6px 8px;margin:2px 0 8px;white-space:pre-wrap;word-break:break-all;font-size:12px}
code{font-size:12px}ol.plan>li{margin-bottom:4px}svg text{font:12px system-ui,sans-serif}
"""


def _text(value: Any) -> str:
    """Escaped text, or the grey "not recorded"."""
    if value is None or value == "":
        return f'<span class="nr">{NOT_RECORDED}</span>'
    return escape(str(value))


def _when(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        stamp = datetime.fromisoformat(value)
    except ValueError:
        return None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def _clock(stamp: datetime | None) -> str:
    return _text(stamp.astimezone(UTC).strftime("%H:%M:%S.%f")[:-3] if stamp else None)


def _seconds(step: dict) -> float | None:
    value = step.get("seconds")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    start, end = _when(step.get("started")), _when(step.get("ended"))
    return (end - start).total_seconds() if start and end else None


def _list(data: dict, key: str) -> list[dict] | None:
    value = data.get(key)
    if not isinstance(value, list):
        return None
    return [item for item in value if isinstance(item, dict)]


def _result(ok: Any) -> str:
    if ok is True:
        return '<span class="ok">ok</span>'
    if ok is False:
        return '<span class="fail">FAILED</span>'
    return _text(None)


def _table(cls: str, headers: list[str], rows: list[str]) -> str:
    head = "".join(f"<th>{h}</th>" for h in headers)
    return f'<table class="{cls}"><tr>{head}</tr>{"".join(rows)}</table>'


def downtime_windows(timeline: list[dict]) -> list[tuple[datetime, datetime]]:
    """The intervals during which the writers were down: each run of consecutive downtime steps is one
    (the milliseconds the laptop takes between one step's end and the next one's start are downtime
    too; only a step that is not downtime ends a window), overlapping ones merged."""
    spans: list[list[datetime]] = []
    open_run = False
    for st in timeline:
        if not st.get("downtime"):
            open_run = False
            continue
        start, end = _when(st.get("started")), _when(st.get("ended"))
        if not (start and end and end >= start):
            continue
        if open_run:
            spans[-1][1] = max(spans[-1][1], end)
        else:
            spans.append([start, end])
            open_run = True
    merged: list[tuple[datetime, datetime]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def rehearsal_order(result) -> tuple:
    """A rehearsal's place in a fleet's table and report: by predicted downtime, failures and sites without
    a prediction last."""
    data = result.data if isinstance(getattr(result, "data", None), dict) else {}
    down = data.get("predicted_downtime")
    return (not result.ok, down if isinstance(down, (int, float)) else float("inf"), result.site)


def _timeline_svg(timeline: list[dict], label: str = "downtime") -> str:
    """Each step a bar from its start to its end; the downtime window shaded behind them."""
    timed = [(st, _when(st.get("started")), _when(st.get("ended"))) for st in timeline]
    known = [(s, e) for _, s, e in timed if s and e]
    if not known:
        return f'<p class="nr">timeline {NOT_RECORDED}</p>'
    t0 = min(s for s, _ in known)
    total = max((max(e for _, e in known) - t0).total_seconds(), 0.001)
    label_w, bar_w, row_h, top = 300, 600, 22, 28
    height = top + row_h * len(timed) + 24

    def x(stamp: datetime) -> float:
        return label_w + bar_w * (stamp - t0).total_seconds() / total

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + bar_w + 20}" height="{height}" '
             f'role="img" aria-label="timeline of the steps">']
    for start, end in downtime_windows(timeline):
        width = max(x(end) - x(start), 2)
        secs = (end - start).total_seconds()
        parts.append(f'<rect class="downtime" x="{x(start):.1f}" y="{top - 6}" width="{width:.1f}" '
                     f'height="{row_h * len(timed) + 6}" fill="#cf222e" fill-opacity="0.13" stroke="#cf222e" '
                     f'stroke-dasharray="4 3"><title>{escape(label)} {secs:.1f}s</title></rect>')
        parts.append(f'<text x="{x(start):.1f}" y="{top - 10}" fill="#cf222e">{escape(label)} {secs:.1f}s</text>')
    for i in range(5):
        tx = label_w + bar_w * i / 4
        parts.append(f'<line x1="{tx:.1f}" y1="{top - 4}" x2="{tx:.1f}" y2="{height - 18}" stroke="#d0d7de"/>')
        parts.append(f'<text x="{tx:.1f}" y="{height - 4}" text-anchor="middle" fill="#57606a">'
                     f'+{total * i / 4:.1f}s</text>')
    for row, (step, start, end) in enumerate(timed):
        y = top + row * row_h
        title = str(step.get("title") or step.get("key") or NOT_RECORDED)
        short = title if len(title) <= 44 else title[:43] + "…"
        parts.append(f'<text x="4" y="{y + 15}">{escape(short)}<title>{escape(title)}</title></text>')
        if start and end:
            colour = "#1a7f37" if step.get("ok") is True else "#cf222e" if step.get("ok") is False else "#8c959f"
            secs = _seconds(step)
            parts.append(f'<rect class="step" x="{x(start):.1f}" y="{y + 3}" width="{max(x(end) - x(start), 2):.1f}" '
                         f'height="{row_h - 7}" rx="2" fill="{colour}"><title>{escape(title)}: '
                         f'{secs if secs is not None else 0:.1f}s</title></rect>')
        else:
            parts.append(f'<text x="{label_w + 4}" y="{y + 15}" fill="#8c959f">{NOT_RECORDED}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _plan_html(plan: list[dict] | None) -> str:
    if plan is None:
        return f'<p class="nr">plan {NOT_RECORDED}</p>'
    if not plan:
        return '<p class="muted">no steps (nothing to change)</p>'
    items = []
    for step in plan:
        commands = step.get("commands")
        body = ("".join(f"<pre>$ {escape(str(cmd))}</pre>" for cmd in commands) if isinstance(commands, list)
                else f'<div class="nr">commands {NOT_RECORDED}</div>')
        items.append(f'<li data-step="{escape(str(step.get("key") or ""))}">{_text(step.get("title"))}{body}</li>')
    return f'<ol class="plan">{"".join(items)}</ol>'


def _steps_table(timeline: list[dict]) -> str:
    rows = []
    for step in timeline:
        secs = _seconds(step)
        rows.append(
            f'<tr class="step" data-step="{escape(str(step.get("key") or ""))}"><td>{_text(step.get("title"))}</td>'
            f'<td>{_clock(_when(step.get("started")))}</td><td>{_clock(_when(step.get("ended")))}</td>'
            f'<td class="num">{_text(f"{secs:.1f}s" if secs is not None else None)}</td>'
            f'<td>{"yes" if step.get("downtime") else "no"}</td><td>{_result(step.get("ok"))}</td>'
            f'<td>{escape(str(step.get("error") or ""))}</td></tr>')
    return _table("steps", ["step", "start (UTC)", "end (UTC)", "took", "writers down", "result", "error"], rows)


def _copies_html(copies: list[dict] | None) -> str:
    if copies is None:
        return f'<p class="nr">copies {NOT_RECORDED}</p>'
    if not copies:
        return '<p class="muted">no copies made</p>'
    rows = []
    for copy in copies:
        size = copy.get("size")
        shown = f"{human_size(size)} ({size} bytes)" if isinstance(size, int) and not isinstance(size, bool) else None
        rows.append(f'<tr class="copy"><td>{_text(copy.get("what"))}</td><td><code>{_text(copy.get("path"))}</code></td>'
                    f'<td class="num">{_text(shown)}</td><td><code>{_text(copy.get("sha256"))}</code></td></tr>')
    return _table("copies", ["what", "path", "size", "sha256"], rows)


def _checks_html(checks) -> str:
    if not checks:
        return f'<p class="nr">verify {NOT_RECORDED}</p>'
    rows = [f'<tr class="check"><td>{_text(getattr(ch, "name", None))}</td><td>{_text(getattr(ch, "expected", None))}</td>'
            f'<td>{_text(getattr(ch, "actual", None))}</td><td>{_result(getattr(ch, "ok", None))}</td></tr>'
            for ch in checks]
    return _table("checks", ["check", "expected", "actual", "result"], rows)


def _num(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _rehearsal_html(data: dict) -> str:
    """What a rehearsal found: the predicted downtime and its parts, rows kept and lost, peak disk, the throwaway's checks."""
    down, measured, estimated = data.get("predicted_downtime"), data.get("downtime_measured"), data.get("downtime_estimated")
    if data.get("restart_measured"):
        how = "the database steps measured on the copy and the live backend's stop and start measured once"
    elif _num(estimated):
        how = (f"{measured:.1f}s measured on the copy + {estimated:.1f}s estimated (the backend's stop and start, "
               "read from the live server without touching it)") if _num(measured) else "measured + estimated"
    else:
        how = "a lower bound: the database steps measured on the copy; the backend's stop and start not known"
    est = data.get("restart_estimate") if isinstance(data.get("restart_estimate"), dict) else {}
    parts = ", ".join(f"{k} {est[k]:.2f}s" if _num(est.get(k)) else f"{k} {NOT_RECORDED}"
                      for k in restart_estimate.PARTS if k in est)
    out = ["<h3>Rehearsal</h3>",
           f'<p class="predicted">predicted downtime: <b>{_text(f"{down:.1f}s" if _num(down) else None)}</b> ({escape(how)})</p>']
    if est:
        out.append(f'<p class="estimate muted">the backend\'s stop and start, estimated: {escape(parts)} — '
                   f'{_text(est.get("how"))}</p>')
    peak, need = data.get("peak_disk"), data.get("disk_needed")
    out.append(f'<p class="disk">peak disk: {_text(human_size(peak) if _num(peak) else None)} '
               f'(checked before: about {_text(human_size(need) if _num(need) else None)})</p>')
    tables = _list(data, "tables")
    if tables:
        rows = [f'<tr class="table" data-table="{escape(str(t.get("table") or ""))}"><td>{_text(t.get("table"))}</td>'
                + "".join(f'<td class="num">{_text(t.get(k))}</td>' for k in ("before", "after", "kept", "lost")) + "</tr>"
                for t in tables]
        out.append(_table("tables", ["table", "rows before", "after", "kept", "lost"], rows))
    else:
        out.append(f'<p class="nr">rows per table {NOT_RECORDED}</p>')
    checks = _list(data, "checks")
    out.append("<h3>Checks on the throwaway (plain image)</h3>")
    if checks:
        rows = [f'<tr class="check"><td>{_text(c.get("name"))}</td><td>{_text(c.get("expected"))}</td>'
                f'<td>{_text(c.get("actual"))}</td><td>{_result(c.get("ok"))}</td></tr>' for c in checks]
        out.append(_table("checks", ["check", "expected", "actual", "result"], rows))
    else:
        out.append(f'<p class="nr">checks {NOT_RECORDED}</p>')
    skipped = data.get("not_rehearsed")
    if isinstance(skipped, list) and skipped:
        out.append('<p class="muted">not rehearsed (they act on the live stack or its files): '
                   f'{escape("; ".join(map(str, skipped)))}</p>')
    return "\n".join(out)


def _anchor(site: str) -> str:
    return "site-" + _SAFE.sub("_", site)


def _site_html(result) -> str:
    data = result.data if isinstance(getattr(result, "data", None), dict) else {}
    timeline = _list(data, "timeline")
    windows = downtime_windows(timeline or [])
    downtime = sum((end - start).total_seconds() for start, end in windows)
    badge = '<span class="badge ok">ok</span>' if result.ok else '<span class="badge fail">FAILED</span>'
    head = [f'<section class="site" id="{_anchor(result.site)}" data-site="{escape(result.site)}">',
            f"<h2>{escape(result.site)} {badge}</h2>",
            f'<p>{escape(result.task)}: {_text(result.summary or result.error)} — took {result.seconds:.1f}s'
            + (f", exit {result.code}" if result.code else "") + "</p>"]
    if not result.ok:
        head.append(f'<div class="next"><b>What to do next:</b> {_text(result.next_step)}'
                    + (f"<br><b>Error:</b> {escape(result.error)}" if result.error else "") + "</div>")
    head.append(f'<p class="muted">audit log: <code>{_text(result.audit_log)}</code></p>')
    rehearsal = result.task == "rehearse"
    body = [_rehearsal_html(data)] if rehearsal else ["<h3>Plan</h3>", _plan_html(_list(data, "plan"))]
    body.append("<h3>Steps</h3>")
    label = "downtime (predicted, on the copy)" if rehearsal else "downtime"
    if timeline is None:
        body.append(f'<p class="nr">timeline {NOT_RECORDED}</p>')
    else:
        if windows:
            body.append(f'<p>{label} ' + ("" if rehearsal else "(the stack\'s writers down)") + f': <b>{downtime:.1f}s</b>, '
                        + ", ".join(f"{_clock(s)}–{_clock(e)} UTC" for s, e in windows) + "</p>")
        body += [_timeline_svg(timeline, label), _steps_table(timeline)]
    if not rehearsal:
        body += ["<h3>Copies made</h3>", _copies_html(_list(data, "copies")),
                 "<h3>Verify</h3>", _checks_html(getattr(result, "checks", None))]
    body.append("</section>")
    return "\n".join(head + body)


def render(results: list, title: str, generated: datetime | None = None) -> str:
    """The whole report as one HTML document."""
    generated = generated or datetime.now(UTC)
    if results and all(getattr(r, "task", "") == "rehearse" for r in results):
        results = sorted(results, key=rehearsal_order)  # as the fleet's table: by predicted downtime
    failed = [r for r in results if not r.ok]
    rows = [
        f'<tr class="summary" data-site="{escape(r.site)}"><td><a href="#{_anchor(r.site)}">{escape(r.site)}</a></td>'
        f'<td>{_result(bool(r.ok))}</td><td>{_text(r.summary or r.error)}</td><td class="num">{r.seconds:.1f}s</td>'
        f'<td>{escape(r.next_step or "-")}</td></tr>' for r in results]
    verdict = (f'<span class="ok">all {len(results)} site(s) ok</span>' if not failed else
               f'<span class="fail">{len(failed)} of {len(results)} site(s) not ok: '
               f'{escape(", ".join(r.site for r in failed))}</span>')
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        # nothing in the file may reach the network: the report is opened offline, from a ticket
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">",
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="muted">generated {generated.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")} UTC</p>',
        f"<p>{verdict}</p>",
        _table("overview", ["site", "result", "what happened", "took", "next"], rows),
        *(_site_html(r) for r in results),
        "</body></html>\n",
    ])


def report_path(results: list, task: str, when: datetime | None = None) -> Path:
    """Beside the first site's audit log (else in :func:`default_log_dir`):
    report_<site, or fleet>_<UTC>_<pid>_<task>.html."""
    when = when or datetime.now(UTC)
    logs = [r.audit_log for r in results if getattr(r, "audit_log", "")]
    directory = Path(logs[0]).parent if logs else default_log_dir()
    who = results[0].site if len(results) == 1 else "fleet"
    name = f"report_{_SAFE.sub('_', who)}_{when.strftime('%Y%m%dT%H%M%S')}_{os.getpid()}_{_SAFE.sub('_', task)}.html"
    return directory / name


def write_report(results: list, task: str, path: str | Path | None = None, title: str | None = None) -> Path:
    """Write the report (to ``path`` when given, e.g. ``--report``) and return where it went."""
    target = Path(path).expanduser() if path else report_path(results, task)
    target.parent.mkdir(parents=True, exist_ok=True)
    sites = ", ".join(r.site for r in results)
    target.write_text(render(results, title or f"netmon-rollback {task}: {sites}"))
    return target
