"""The run report: rendered from synthetic HostResults, then opened in a real headless Chromium."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from fabfile import html_report
from fabfile.procedures import HostResult
from fabfile.verify import Check
from tests import browser

STEPS = [
    ("safety_dump", "safety dump of netmon", "10:00:00.100", "10:00:01.400", False, True),
    ("restore_side", "restore the dump into a side database", "10:00:01.400", "10:00:04.900", False, True),
    ("stop_writers", "stop the writers", "10:00:04.900", "10:00:05.300", True, True),
    ("swap", "swap the restored database in", "10:00:05.300", "10:00:05.600", True, True),
    ("start_stack", "start the rest of the stack", "10:00:05.600", "10:00:08.100", True, True),
]


def _timeline(steps, fail_last=False):
    out = []
    for i, (key, title, start, end, down, ok) in enumerate(steps):
        failed = fail_last and i == len(steps) - 1
        out.append({"key": key, "title": title, "started": f"2026-12-01T{start}+00:00",
                    "ended": f"2026-12-01T{end}+00:00", "seconds": None, "downtime": down,
                    "ok": ok and not failed, "error": "backend /api/health never answered 200" if failed else ""})
    return out


def _results() -> list[HostResult]:
    good = HostResult(
        "lab1", "rollback", True, summary="rolled back", seconds=8.4, audit_log="/var/log/x/audit_lab1.jsonl",
        checks=[Check("timescaledb extension in netmon (runbook 2)", "0", "0", True),
                Check("tables in public (runbook 7, BASE TABLE)", "32", "31", False)],
        data={"plan": [{"key": k, "title": t, "commands": [f"echo {k} <&1"]} for k, t, *_ in STEPS],
              "timeline": _timeline(STEPS),
              "copies": [{"what": "safety dump", "path": "/root/netmon_pre_rollback_20261201_100000.dump",
                          "size": 372569, "sha256": "b2dc6c9352d3205a2b77e61e295b9bec9eaae12e1d3aa1f9e7f334e04bdb3988"}]})
    bad = HostResult(
        "lab2", "rollback", False, summary="", seconds=12.0, error="step 'start_stack' on lab2: health failed",
        next_step="start the backend by hand (docker compose up -d backend), then rerun rollback", code=6,
        data={"timeline": _timeline(STEPS[2:], fail_last=True)})
    return [good, bad]


class _Text(HTMLParser):
    def __init__(self):
        super().__init__()
        self.parts: list[str] = []

    def handle_data(self, data):
        self.parts.append(data)


def _text(html: str) -> str:
    parser = _Text()
    parser.feed(html)
    return " ".join(" ".join(parser.parts).split())


def test_missing_keys_render_as_not_recorded():
    bare = HostResult("lab3", "reset", False, error="connection to lab3 lost", code=5,
                      data={"timeline": [{"key": "x"}, "junk"], "plan": "not a list", "copies": [{"size": "big"}]})
    text = _text(html_report.render([bare], "reset"))
    assert "plan not recorded" in text and "verify not recorded" in text and "timeline not recorded" in text
    assert "What to do next: not recorded" in text


def test_report_marks_downtime_and_escapes():
    html = html_report.render(_results()[:1], "rollback <lab1>")
    assert "<lab1>" not in html and "&lt;lab1&gt;" in html and "echo swap &lt;&amp;1" in html
    windows = html_report.downtime_windows(_results()[0].data["timeline"])
    assert [(s.strftime("%H:%M:%S.%f")[:-3], e.strftime("%H:%M:%S.%f")[:-3]) for s, e in windows] == \
        [("10:00:04.900", "10:00:08.100")]
    assert "downtime 3.2s" in html
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")  # nothing to fetch


def test_report_path_is_beside_the_audit_log(tmp_path):
    result = _results()[0]
    result.audit_log = str(tmp_path / "audit_lab1_x.jsonl")
    path = html_report.write_report([result], "rollback")
    assert path.parent == tmp_path and path.name.startswith("report_lab1_") and path.name.endswith("_rollback.html")
    assert html_report.write_report(_results(), "rollback", tmp_path / "r" / "mine.html") == tmp_path / "r" / "mine.html"


def test_report_in_a_real_browser(tmp_path):
    report = html_report.write_report(_results(), "rollback", tmp_path / "report.html")
    page = browser.dom(tmp_path, report)
    assert list(browser.sections(page)) == ["lab1", "lab2"]
    lab1, lab2 = browser.sections(page).values()
    assert re.findall(r'<tr class="step" data-step="([^"]+)"', lab1) == [k for k, *_ in STEPS]
    assert re.findall(r'<tr class="step" data-step="([^"]+)"', lab2) == ["stop_writers", "swap", "start_stack"]
    assert len(re.findall(r'<rect class="step"', page)) == 8
    assert len(re.findall(r'<rect class="downtime"', page)) == 2
    checks = re.findall(r'<tr class="check"><td>([^<]+)</td><td>([^<]+)</td><td>([^<]+)</td><td><span class="(ok|fail)"',
                        lab1)
    assert checks == [("timescaledb extension in netmon (runbook 2)", "0", "0", "ok"),
                      ("tables in public (runbook 7, BASE TABLE)", "32", "31", "fail")]
    assert "What to do next:" in lab2 and "start the backend by hand" in lab2 and "What to do next:" not in lab1
    browser.screenshot(tmp_path, report)  # kept in the test's tmp dir, to look at
