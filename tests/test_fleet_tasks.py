"""The fleet tasks' own logic (fabfile/fleet_tasks.py)."""

from fabfile import fleet_tasks
from fabfile.inventory import SiteSettings


def test_the_admin_password_is_resolved_once_per_source_before_any_worker(monkeypatch):
    asked = []

    def fake(site, prompt=True):
        asked.append(site.name)
        return f"pw-{site.admin_password_file or 'prompt'}"

    monkeypatch.setattr(fleet_tasks, "admin_password", fake)
    shared = "/x"  # a password file both c and d name
    sites = [SiteSettings(name="a"), SiteSettings(name="b"), SiteSettings(name="c", admin_password_file=shared),
             SiteSettings(name="d", admin_password_file=shared)]
    assert fleet_tasks._passwords(sites) == {"a": "pw-prompt", "b": "pw-prompt", "c": "pw-/x", "d": "pw-/x"}
    assert asked == ["a", "c"]  # one prompt for the sites that share a source, never one per worker


def test_no_password_is_an_empty_answer_so_no_worker_prompts(monkeypatch):
    monkeypatch.setattr(fleet_tasks, "admin_password", lambda site, prompt=True: None)
    assert fleet_tasks._passwords([SiteSettings(name="a")]) == {"a": ""}
