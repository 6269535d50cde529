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


def test_consecutive_downtime_steps_are_one_window_and_a_step_between_splits_it():
    def st(key, start, end, down=True):
        return {"key": key, "started": f"2026-12-02T10:00:{start}+00:00", "ended": f"2026-12-02T10:00:{end}+00:00",
                "downtime": down}

    def spans(timeline):
        return [(s.strftime("%S.%f")[:-3], e.strftime("%S.%f")[:-3]) for s, e in html_report.downtime_windows(timeline)]

    # the laptop's milliseconds between one step's end and the next one's start stay inside the window
    steady = [st("build", "00.000", "01.000", down=False), st("stop-writers", "01.001", "02.000"),
              st("swap", "02.003", "03.000"), st("start-app", "03.002", "04.000"), st("start-rest", "04.001", "05.000", False)]
    assert spans(steady) == [("01.001", "04.000")]
    split = [*steady[:2], st("copy", "02.001", "02.500", down=False), *steady[2:]]
    assert spans(split) == [("01.001", "02.000"), ("02.003", "04.000")]
    assert spans([st("swap", "02.000", "01.000"), st("start-app", "03.000", "04.000")]) == [("03.000", "04.000")]


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


def _rehearsal(site: str, ok: bool, down: float | None, estimated: float | None = 0.9) -> HostResult:
    timeline = _timeline([("convert-copy", "copy the hypertables", "10:00:00.000", "10:00:02.000", False, True),
                          ("convert-switch", "switch to the copies", "10:00:02.000", "10:00:02.400", True, True),
                          ("start-db", "start the db (the throwaway)", "10:00:02.400", "10:00:03.000", True, ok)])
    return HostResult(site, "rehearse", ok, summary="rehearsal passed" if ok else "", error="" if ok else "boom",
                      data={"timeline": timeline, "predicted_downtime": down, "downtime_measured": 1.0,
                            "downtime_estimated": estimated, "restart_measured": False,
                            "restart_estimate": {"seconds": estimated, "stop": 0.0, "start": 0.2, "commands": 0.7,
                                                 "how": "its last start"},
                            "tables": [{"table": "public.flow_records", "before": 100, "after": 100, "kept": 100,
                                        "lost": 0},
                                       {"table": "public.flow_summary_5m", "before": 7, "after": 5, "kept": 5, "lost": 2}],
                            "peak_disk": 73 * 2**20, "disk_needed": 127 * 2**20,
                            "checks": [{"name": "db runs the plain image", "expected": "postgres:16-alpine",
                                        "actual": "postgres:16-alpine", "ok": True}],
                            "not_rehearsed": ["stop the writers"]})


def test_rehearsal_report_has_its_prediction_rows_disk_and_checks_sorted_by_predicted_downtime():
    results = [_rehearsal("slow", True, 2.5), _rehearsal("broken", False, 0.3), _rehearsal("fast", True, 1.9)]
    html = html_report.render(results, "rehearse")
    assert re.findall(r'<tr class="summary" data-site="([^"]+)"', html) == ["fast", "slow", "broken"]
    assert re.findall(r'<section class="site" id="[^"]+" data-site="([^"]+)"', html) == ["fast", "slow", "broken"]
    fast = html.split('<section class="site" id="site-fast"', 1)[1].split("</section>", 1)[0]
    text = _text(fast)
    assert "predicted downtime: 1.9s (1.0s measured on the copy + 0.9s estimated" in text
    assert "estimated: stop 0.00s, start 0.20s, commands 0.70s" in text
    assert "peak disk: 73.0 MiB (checked before: about 127.0 MiB)" in text
    assert re.findall(r'<tr class="table" data-table="([^"]+)">.*?<td class="num">(\d+)</td></tr>', fast) == \
        [("public.flow_records", "0"), ("public.flow_summary_5m", "2")]
    assert "db runs the plain image postgres:16-alpine postgres:16-alpine ok" in text
    assert "downtime (predicted, on the copy) 1.0s" in fast and "writers down)" not in text
    assert "Copies made" not in text  # a rehearsal copies nothing the operator keeps
    lower = _text(html_report.render([_rehearsal("x", True, 1.0, estimated=None)], "rehearse"))
    assert "(a lower bound: the database steps measured on the copy" in lower
    rollback = html_report.render(_results(), "rollback")  # the other tasks keep their order and their band
    assert re.findall(r'<tr class="summary" data-site="([^"]+)"', rollback) == ["lab1", "lab2"]
    assert "downtime 3.2s" in rollback and "predicted" not in rollback
