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


class Refused(RollbackError):
    """The operator did not confirm, or there was no terminal to confirm on."""

    code = 8


def as_exit(func):
    """Decorator for task bodies: a RollbackError becomes ``invoke.Exit(message, code)``."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except RollbackError as err:
            raise Exit(f"error: {err.message}", code=err.code) from None

    return wrapper


class LockHeld(RollbackError):
    """Another run holds the server's lock; nothing was changed."""

    code = 10
