"""How an ``insightmesh`` command fails: one line on stderr naming the cause and what to do.

Every command runs through :func:`run_command`, the one place that turns failures into that line
and the exit code, so commands raise instead of printing and returning:

* **Usage** (exit 2): :class:`Parser` is the ``ArgumentParser`` of every command and subcommand.
  A wrong flag is reported by the subcommand that received it, with *its* usage (``chat --usr X``
  names ``insightmesh chat``'s options, not the top level's), all on one line.
* **Known failures** (exit 1): :class:`CommandError` (what a command raises for something the
  person at the terminal can fix) and the exception types in :data:`KNOWN` — an unreachable dev
  server, an unknown user, an AWS refusal, ... — whose messages already say what happened; the
  table adds what to do.
* **Anything else is a bug** (exit 1): one line with the exception's type and message, and how to
  see the traceback (``--debug`` or ``INSIGHTMESH_DEBUG=1``, which also let the exception through).

Commands other than ``dev`` and ``invoke`` (whose output *is* the functions' logs) print no log
lines: the layer logs JSON for CloudWatch, which is noise at a terminal (``--debug`` shows it).
"""

from __future__ import annotations

import argparse
import difflib
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn, TextIO

DEBUG_VARIABLE = "INSIGHTMESH_DEBUG"
DEBUG_HINT = f"rerun with --debug (or {DEBUG_VARIABLE}=1) for the traceback"
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
# Commands whose output is the functions' own (JSON) logs, as Lambda's would be.
LOGGING_COMMANDS = frozenset({"dev", "invoke"})


class CommandError(Exception):
    """A failure the person at the terminal can fix; the message says what happened and what to do."""

    def __init__(self, message: str, *, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def one_line(text: str) -> str:
    """``text`` with its line breaks and runs of blanks folded into single spaces."""
    return " ".join(text.split())


def debug_requested(args: argparse.Namespace | None = None, environ: dict[str, str] | None = None) -> bool:
    value = (environ if environ is not None else os.environ).get(DEBUG_VARIABLE, "").strip().lower()
    return bool(getattr(args, "debug", False)) or value not in ("", "0", "false", "no", "off")


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line from the (sub)command that got them.

    Every parser made from it (``add_subparsers`` makes its subparsers of the parent's class) takes
    ``--debug`` and records its ``prog`` as ``command_prog``, so the deepest subcommand's name is
    what failure lines start with."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.set_defaults(command_prog=self.prog)
        # SUPPRESS: a subcommand without --debug must not reset `insightmesh --debug <command>`.
        self.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                          help=f"show log lines and the traceback of an unexpected error (or {DEBUG_VARIABLE}=1)")

    def parse_known_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                         namespace: argparse.Namespace | None = None) -> tuple[argparse.Namespace, list[str]]:
        # A subcommand refuses what it does not know itself; argparse would hand the leftovers up to
        # the top level, which then shows its own usage instead of the subcommand's.
        parsed, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}{self._suggestion(extras)}")
        return parsed, extras

    def _suggestion(self, extras: list[str]) -> str:
        known = [option for action in self._actions for option in action.option_strings]
        for extra in extras:
            if extra.startswith("-"):
                close = difflib.get_close_matches(extra.split("=", 1)[0], known, n=1)
                if close:
                    return f" (did you mean {close[0]}?)"
        return ""

    def error(self, message: str) -> NoReturn:
        usage = one_line(self.format_usage())
        self.exit(EXIT_USAGE, f"{self.prog}: {one_line(message)}; {usage} ({self.prog} --help explains each "
                              f"option)\n")


# -- known failures ------------------------------------------------------------------------------

Explain = Callable[[BaseException], str]


def _as_is(error: BaseException) -> str:
    return str(error)


def _unknown_email(error: BaseException) -> str:
    return (f"{error}: check the address (an admin can look people up with GET /api/users?email=), or create "
            "the user with `insightmesh admin bootstrap --email ...` or `insightmesh token create --email ...`")


def _invalid_email(error: BaseException) -> str:
    return f"{error}: give a whole address, such as alice@example.com"


def _aws(error: BaseException) -> str:
    return (f"AWS refused or could not be reached: {error} (check your AWS credentials and region, or drop "
            "--stack-name to use the local system)")


def _tables(error: BaseException) -> str:
    return (f"the stack's tables could not be used: {error} (is the `insightmesh dev` the command found still "
            "running, or is the stack deployed with the current template?)")


def known_errors() -> dict[type[BaseException], Explain]:
    """Exception type → the line to print (message plus what to do). Imported when needed: the CLI
    must start without the layer's models (``insightmesh chat`` never loads them)."""
    from botocore.exceptions import BotoCoreError, ClientError
    from pynamodb.exceptions import PynamoDBException

    from insightmesh.directory.email_users import InvalidEmailError, UnknownEmailError
    from insightmesh_local import admin_cli, ingest_cli, local_auth
    from insightmesh_local.chat import ChatError

    return {
        local_auth.ControlError: _as_is,
        admin_cli.TargetError: _as_is,
        ingest_cli.TargetError: _as_is,
        ChatError: _as_is,
        UnknownEmailError: _unknown_email,
        InvalidEmailError: _invalid_email,
        ClientError: _aws,
        BotoCoreError: _aws,
        PynamoDBException: _tables,
    }


def explain(error: BaseException, table: dict[type[BaseException], Explain] | None = None) -> str | None:
    """The line for a known failure (the most specific type in the table wins), else ``None``."""
    table = known_errors() if table is None else table
    for kind in type(error).__mro__:
        if kind in table:
            return one_line(table[kind](error))
    return None


@contextmanager
def quiet_logs(enabled: bool) -> Iterator[None]:
    """No log records while the command runs (restored after: tests call ``main`` in-process)."""
    if not enabled:
        yield
        return
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(previous)


def run_command(command: Callable[[argparse.Namespace], int], args: argparse.Namespace,
                err: TextIO | None = None) -> int:
    """Run ``command(args)``; every failure ends as one line on ``err`` (stderr) and an exit code."""
    stream = err or sys.stderr
    prog = str(getattr(args, "command_prog", "insightmesh"))
    debug = debug_requested(args)

    def fail(line: str, code: int) -> int:
        print(f"{prog}: {line}", file=stream, flush=True)
        return code

    try:
        with quiet_logs(not debug and getattr(args, "command", None) not in LOGGING_COMMANDS):
            return int(command(args))
    except CommandError as error:
        return fail(one_line(str(error)), error.exit_code)
    except KeyboardInterrupt:
        return fail("interrupted", EXIT_INTERRUPTED)
    except Exception as error:
        line = explain(error)
        if line is not None:
            return fail(line, EXIT_FAILURE)
        if debug:
            raise
        # The one place an unexpected error is caught: a bug, said in one line with how to see it whole.
        return fail(f"unexpected {type(error).__name__}: {one_line(str(error)) or '(no message)'}; {DEBUG_HINT}",
                    EXIT_FAILURE)


__all__ = ["DEBUG_HINT", "DEBUG_VARIABLE", "EXIT_USAGE", "CommandError", "Parser", "debug_requested", "explain",
           "known_errors", "one_line", "quiet_logs", "run_command"]
