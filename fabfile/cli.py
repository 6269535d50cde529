"""`netmon-rollback`: Fabric's own `fab` program bound to this package's tasks, so every fab option
works (-H, -S, -i, -e, -T, --dry, --list, --help, --print-completion-script) from any directory,
with no fabfile to find. Adds ``--log-dir`` and ends ``--help`` with the exit-status table."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from fabric import Config, Executor
from fabric.main import Fab
from invoke import Argument

from . import ns
from .errors import exit_codes_text
from .runner import set_log_dir

NAME = "netmon-rollback"


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


def _version() -> str:
    try:
        return version(NAME)
    except PackageNotFoundError:  # run from the checkout without installing
        return "checkout"


def make_program() -> Program:
    return Program(name=NAME, binary=NAME, binary_names=[NAME], namespace=ns, version=_version(),
                   executor_class=Executor, config_class=Config)


def main() -> None:
    make_program().run()
