"""Git facts (fabfile/facts/git.py): the script run in a real shell on a real repository laid out as
a NetMon install before and after the migration, and a lab site's recorded lines."""

import subprocess

from fabfile.facts import git
from fabfile.facts.parts import Unknown, keyed
from fabfile.inventory import SiteSettings
from tests.fakes import recorded


def sh(cwd, *args):
    return subprocess.run(args, cwd=cwd, check=True, capture_output=True, text=True, timeout=30).stdout.strip()


def test_recorded_git_facts_of_a_rolled_back_site():
    found, head, dirty, history = git.parse(keyed(recorded("host_probe_verify_rolled_back.txt")))
    assert found and dirty == [] and [kind for _, kind in history] == ["plain", "tsdb", "plain"]
    assert git.pre_migration_rev(history) == history[0][0] == "128506def7fd0a56b7869d124707f16ecd270075"


def test_history_head_and_dirty_files_of_a_real_repository(tmp_path):
    app = tmp_path / "net mon"
    app.mkdir()
    sh(app, "git", "init", "-q")
    sh(app, "git", "config", "user.email", "t@t")
    sh(app, "git", "config", "user.name", "t")
    (app / "docker-compose.yml").write_text("services:\n  db: {image: postgres:16-alpine}\n")
    sh(app, "git", "add", ".")
    sh(app, "git", "commit", "-qm", "plain")
    plain = sh(app, "git", "rev-parse", "HEAD")
    (app / "docker-compose.yml").write_text("services:\n  db: {image: timescale/timescaledb:latest-pg16}\n")
    sh(app, "git", "commit", "-qam", "migrate")
    tsdb = sh(app, "git", "rev-parse", "HEAD")
    (app / "docker-compose.yml").write_text("services:\n  db: {image: timescale/timescaledb:latest-pg17}\n")
    out = subprocess.run(["sh", "-c", git.script(SiteSettings(app_dir=str(app)))], capture_output=True, text=True,
                         timeout=30).stdout
    found, head, dirty, history = git.parse(keyed(out))
    assert found and head == tsdb and dirty == ["docker-compose.yml"]
    assert history == [(tsdb, "tsdb"), (plain, "plain")] and git.pre_migration_rev(history) == plain
    assert git.parse(keyed(subprocess.run(["sh", "-c", git.script(SiteSettings(app_dir=str(tmp_path)))],
                                          capture_output=True, text=True, timeout=30).stdout)) == (False, "", [], [])
    assert git.pre_migration_rev([(tsdb, "tsdb")]) is None


def test_a_repository_git_cannot_read_is_unknown_not_no_repository():
    """Recorded on a migrated lab site with .git/HEAD moved aside."""
    got = git.parse(keyed(recorded("host_probe_git_journal_unreadable.txt")))
    assert got == Unknown("git in the app directory failed (exit 128: fatal: not a git repository (or any of the "
                          "parent directories): .git)")
