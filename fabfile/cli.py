"""The installed commands. `netmon-rollback`: Fabric's own `fab` program bound to this package's
tasks, so every fab option works (-H, -S, -i, -e, -T, --dry, --list, --help, --print-completion-script)
from any directory, with no fabfile to find; adds ``--log-dir`` and ends ``--help`` with the
exit-status table. `netmon-fleet`: Invoke's own program bound to the fleet's tasks (the checkout's
`invoke verify|status|backup|rollback`, without the lab)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from fabric import Config, Executor
from fabric.main import Fab
from invoke import Argument
from invoke import Program as InvokeProgram

from . import fleet_tasks, ns
from .errors import exit_codes_text
from .runner import set_log_dir
from .tasks import INSTALLED

NAME = INSTALLED
FLEET = "netmon-fleet"


class Program(Fab):
    def core_args(self):
        return [*super().core_args(),
                Argument(names=("log-dir",), help="where audit logs and reports go "
                         "(default: $NETMON_AUDIT_DIR, else $XDG_STATE_HOME/netmon-rollback)")]

    def update_config(self):
        super().update_config()
        set_log_dir(self.args["log-dir"].value)

    def print_help(self):
        super().print_help()
        print(exit_codes_text())
        print()


class FleetProgram(InvokeProgram):
    def print_help(self):
        super().print_help()
        print(exit_codes_text())
        print()


def _version() -> str:
    try:
        return version(NAME)
    except PackageNotFoundError:  # run from the checkout without installing
        return "checkout"


def make_program() -> Program:
    return Program(name=NAME, binary=NAME, binary_names=[NAME], namespace=ns, version=_version(),
                   executor_class=Executor, config_class=Config)


def make_fleet_program() -> FleetProgram:
    return FleetProgram(name=FLEET, binary=FLEET, binary_names=[FLEET], namespace=fleet_tasks.collection(),
                        version=_version())


def main() -> None:
    make_program().run()


def fleet_main() -> None:
    make_fleet_program().run()
