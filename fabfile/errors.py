"""The project's small exception hierarchy.

Every message is one line: what is wrong — what to do. Task functions turn these into
``invoke.Exit(message, code)`` at the edge (see :func:`as_exit`), so an operator sees one
line and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import functools

from invoke.exceptions import Exit


class RollbackError(Exception):
    """Base class: a failure the operator can act on."""

    code = 1

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InputError(RollbackError):
    """Bad input from the operator (options, inventory, dump file); nothing was changed."""

    code = 2


class InventoryError(InputError):
    """hosts.yml is missing, malformed, or names an unknown key/site/group."""


class PreflightError(RollbackError):
    """The server is not in a state the task can work on; nothing was changed."""

    code = 3


class HostKeyError(RollbackError):
    """The server's SSH host key is unknown or changed; no command was run."""

    code = 4


class ConnectError(RollbackError):
    """The server could not be reached, or the connection was lost."""

    code = 5


class CommandFailed(RollbackError):
    """A remote command failed (exit status, timeout, or an error in its output)."""

    code = 6


class VerifyFailed(RollbackError):
    """One or more verify checks failed."""

    code = 7


class LockHeld(RollbackError):
    """Another run holds the server's lock; nothing was changed."""

    code = 10


class Refused(RollbackError):
    """The operator did not confirm, or there was no terminal to confirm on."""

    code = 8


#: The one exit-status table of `fab`, `netmon-rollback` and the fleet's `invoke` tasks.
EXIT_CODES: dict[int, str] = {
    0: "done",
    1: "failed (in a batch: sites failed for different reasons)",
    InputError.code: "bad input (options, inventory, dump file); nothing changed",
    PreflightError.code: "preflight refused: the server is not in a state the task can work on; nothing changed",
    HostKeyError.code: "SSH host key unknown or changed; no command ran",
    ConnectError.code: "cannot connect, or the connection was lost",
    CommandFailed.code: "a remote command failed or timed out",
    VerifyFailed.code: "verify failed",
    Refused.code: "not confirmed (or no terminal to confirm on); nothing changed",
    9: "not started: the batch's --max-failures was reached first",
    LockHeld.code: "busy: another run holds the server's lock (status shows who); nothing changed",
}


def exit_codes_text(markdown: bool = False) -> str:
    """The table as text: for ``--help`` (plain) and for the README (``markdown=True``)."""
    if markdown:
        return "\n".join(["| exit | meaning |", "|---|---|", *(f"| {code} | {what} |" for code, what in EXIT_CODES.items())])
    return "\n".join(["Exit status:", *(f"  {code:>2}  {what}" for code, what in EXIT_CODES.items())])


def batch_code(codes: list[int]) -> int:
    """One exit status for a batch from its failed sites' codes: 0 when none failed, their code when
    they share one (every refusal exits 8, from `fab` or `invoke` alike), else 1."""
    failed = {code or 1 for code in codes}
    if not failed:
        return 0
    return failed.pop() if len(failed) == 1 else 1


def with_exit_codes(func):
    """Append the exit-status table to a task body's docstring, so ``--help TASK`` shows it."""
    func.__doc__ = f"{(func.__doc__ or '').rstrip()}\n\n{exit_codes_text()}\n"
    return func


def as_exit(func):
    """Decorator for task bodies: a RollbackError becomes ``invoke.Exit(message, code)``; the task's
    help ends with the exit-status table."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except RollbackError as err:
            raise Exit(f"error: {err.message}", code=err.code) from None

    return with_exit_codes(wrapper)
