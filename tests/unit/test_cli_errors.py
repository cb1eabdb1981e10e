"""Every `insightmesh` failure is one line: usage errors from the subcommand that got them (exit 2),
known failures with what to do (exit 1), and a bug as its type and message with how to see the
traceback (exit 1) — never a traceback, and no log lines, unless --debug or INSIGHTMESH_DEBUG=1."""

from __future__ import annotations

import argparse
import logging

import pytest

from insightmesh.directory.email_users import InvalidEmailError, UnknownEmailError
from insightmesh.observability import get_logger
from insightmesh_local import local_auth
from insightmesh_local.cli import build_parser, main
from insightmesh_local.cli_errors import DEBUG_VARIABLE, CommandError, explain, run_command


def stderr_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


@pytest.mark.parametrize(("argv", "prog", "expected"), [
    (["chat", "--usr", "X"], "insightmesh chat", "did you mean --user?"),
    (["token", "list", "--email", "a@example.com", "--bogus"], "insightmesh token list", "--bogus"),
    (["admin", "bootstrap", "--email", "not-an-email"], "insightmesh admin bootstrap", "not an e-mail address"),
    (["token", "create", "--email", "a@example.com", "--expires-in", "3w"], "insightmesh token create",
     "--expires-in"),
    (["token"], "insightmesh token", "{create,list,revoke}"),
    (["nonsense"], "insightmesh", "invalid choice: 'nonsense'"),
])
def test_a_usage_error_is_one_line_with_the_subcommands_usage(capsys, argv, prog, expected):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    lines = stderr_lines(capsys)
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{prog}: ") and expected in lines[0]
    assert f"usage: {prog} " in lines[0]


def test_the_subcommand_shows_its_own_usage_not_the_top_levels(capsys):
    with pytest.raises(SystemExit):
        main(["chat", "--usr", "X"])
    line = stderr_lines(capsys)[0]
    assert "--signing-secret" in line and "{dev,invoke" not in line and "COMMAND" not in line


def namespace(**values: object) -> argparse.Namespace:
    return argparse.Namespace(command_prog="insightmesh thing", command="thing", **values)


def test_a_command_error_is_one_line_and_its_exit_code(capsys):
    def command(_args: argparse.Namespace) -> int:
        raise CommandError("the widget is\nmissing: add one", exit_code=2)

    assert run_command(command, namespace()) == 2
    assert stderr_lines(capsys) == ["insightmesh thing: the widget is missing: add one"]


def test_known_failures_say_what_to_do(capsys):
    def unknown(_args: argparse.Namespace) -> int:
        raise UnknownEmailError("nobody@example.com")

    assert run_command(unknown, namespace()) == 1
    [line] = stderr_lines(capsys)
    assert line.startswith("insightmesh thing: no user with e-mail nobody@example.com: check the address")
    assert "GET /api/users?email=" in line
    assert "alice@example.com" in (explain(InvalidEmailError("not an e-mail address: 'x'")) or "")
    assert explain(local_auth.ControlError("no insightmesh dev server on 127.0.0.1:9")) == \
        "no insightmesh dev server on 127.0.0.1:9"


def test_an_unexpected_error_is_one_line_naming_its_type_and_how_to_see_the_traceback(capsys, monkeypatch):
    monkeypatch.delenv(DEBUG_VARIABLE, raising=False)

    def broken(_args: argparse.Namespace) -> int:
        raise ZeroDivisionError("division by zero")

    assert run_command(broken, namespace()) == 1
    captured = capsys.readouterr()
    assert captured.err.strip() == ("insightmesh thing: unexpected ZeroDivisionError: division by zero; rerun with "
                                    f"--debug (or {DEBUG_VARIABLE}=1) for the traceback")
    assert "Traceback" not in captured.err + captured.out
    # a KeyError is a bug too, not a known "not found"
    assert run_command(lambda _args: {}["missing"], namespace()) == 1
    assert "unexpected KeyError" in capsys.readouterr().err


def test_debug_lets_the_traceback_through(monkeypatch):
    def broken(_args: argparse.Namespace) -> int:
        raise ZeroDivisionError("division by zero")

    with pytest.raises(ZeroDivisionError):
        run_command(broken, namespace(debug=True))
    monkeypatch.setenv(DEBUG_VARIABLE, "1")
    with pytest.raises(ZeroDivisionError):
        run_command(broken, namespace())


def test_debug_is_taken_before_or_after_the_subcommand():
    parser = build_parser()
    assert parser.parse_args(["--debug", "token", "list", "--email", "a@example.com"]).debug is True
    assert parser.parse_args(["token", "list", "--email", "a@example.com", "--debug"]).debug is True
    assert not hasattr(parser.parse_args(["token", "list", "--email", "a@example.com"]), "debug")


def test_commands_print_no_log_lines_unless_debugging(caplog, monkeypatch):
    # caplog sees every record that is made, whatever stream the layer's handler holds (under
    # xdist an earlier test may have left it writing to pytest's own capture): a command that prints
    # no log line makes no record at all.
    monkeypatch.delenv(DEBUG_VARIABLE, raising=False)
    caplog.set_level(logging.DEBUG)

    def chatty(_args: argparse.Namespace) -> int:
        get_logger().info("user created by e-mail", extra={"user_id": "u1"})
        get_logger().warning("something to know")
        return 0

    def said() -> str:
        text = caplog.text
        caplog.clear()
        return text

    assert run_command(chatty, namespace()) == 0
    assert said() == ""
    assert logging.root.manager.disable == logging.NOTSET  # restored for whatever runs next in this process
    assert run_command(chatty, namespace(debug=True)) == 0
    assert "user created by e-mail" in said()
    # dev and invoke print the functions' logs, as Lambda would
    assert run_command(chatty, argparse.Namespace(command_prog="insightmesh dev", command="dev")) == 0
    assert "something to know" in said()
