"""netmon-rollback: roll NetMon servers back from TimescaleDB to plain PostgreSQL.

This file only assembles the tasks. Where each runbook step lives:
facts/ and site_state.py (state), plan.py (steps), database.py / files.py / stack.py (the steps' commands),
dumps.py (backups), verify.py (checks), procedures.py (per-host API), tasks.py (fab tasks),
rehearse.py (the rollback rehearsed on a throwaway copy).
"""

from invoke import Collection

from . import rehearse, tasks

ns = Collection(
    tasks.status,
    tasks.backup,
    tasks.rollback,
    tasks.verify,
    tasks.reset,
    tasks.drop_database,
    tasks.fetch_dump,
    tasks.push_dump,
    tasks.restore_check_task,
    rehearse.rehearse_task,
)
