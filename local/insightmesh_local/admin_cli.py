"""`insightmesh admin bootstrap`, `insightmesh token create` and `insightmesh login-link`: the operator's way in.

Bootstrapping the first admin never happens over HTTP: these commands write to the stack's
tables directly, with the caller's own AWS credentials — against the running local system
(its emulator, found through the dev server's /_local/stack) or against a deployed stack
(table names from CloudFormation). Only the token goes to stdout; everything else to stderr.
A failure raises (``TargetError``, the layer's ``UnknownEmailError``, ...) and ``cli_errors``
turns it into one line; a bad ``--email`` or ``--expires-in`` is a usage error (exit 2).
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from insightmesh_local import local_auth
from insightmesh_local.cli_errors import CommandError
from insightmesh_local.stack import LOCAL_CREDENTIALS
from insightmesh_local.template import load_template

EXIT_USAGE = 2


class TargetError(RuntimeError):
    pass


@dataclass(frozen=True)
class Target:
    description: str
    environment: dict[str, str]
    console_url: str = ""  # the console's home URL (ends with /console, no slash)


def _local_target(port: int, data_dir: str | None = None) -> Target:
    try:  # waits a few seconds for a runtime that is still starting
        stack = local_auth.ControlClient(port, data_dir).request("stack")
    except local_auth.ControlError as error:
        raise TargetError(f"{error} (or use --stack-name for a deployed stack)") from error
    environment = {**stack["environment"], "AWS_ENDPOINT_URL": stack["endpoint"], "AWS_REGION": stack["region"],
                   "AWS_DEFAULT_REGION": stack["region"], **LOCAL_CREDENTIALS}
    return Target(f"local stack {stack['stack_name']} ({stack['endpoint']})", environment,
                  console_url=f"http://127.0.0.1:{port}/console")


def _aws_target(stack_name: str, template_path: Path, region: str | None) -> Target:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    template = load_template(template_path)
    variables = (template.function_globals.get("Environment") or {}).get("Variables") or {}
    wanted = {name: value["Ref"] for name, value in variables.items()
              if isinstance(value, dict) and "Ref" in value and name.endswith("_TABLE")}
    session = boto3.session.Session(region_name=region)
    try:
        paginator = session.client("cloudformation").get_paginator("list_stack_resources")
        physical = {summary["LogicalResourceId"]: summary["PhysicalResourceId"]
                    for page in paginator.paginate(StackName=stack_name)
                    for summary in page["StackResourceSummaries"]}
        outputs = {output["OutputKey"]: output["OutputValue"]
                   for stack in session.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"]
                   for output in stack.get("Outputs", [])}
    except (BotoCoreError, ClientError) as error:
        raise TargetError(f"cannot read stack {stack_name!r}: {error}") from error
    console_url = (outputs.get("ConsoleUrl") or (outputs["ApiUrl"].rstrip("/") + "/console" if "ApiUrl" in outputs
                                                 else "")).rstrip("/")
    environment = {name: physical[logical] for name, logical in wanted.items() if logical in physical}
    missing = sorted(set(wanted) - set(environment))
    if missing:
        raise TargetError(f"stack {stack_name} has no table for {', '.join(missing)}: deploy the current template")
    environment["AWS_REGION"] = environment["AWS_DEFAULT_REGION"] = session.region_name or "us-east-1"
    return Target(f"AWS stack {stack_name} ({session.region_name})", environment, console_url=console_url)


def resolve_target(args: argparse.Namespace) -> Target:
    if args.stack_name:
        return _aws_target(args.stack_name, Path(args.template), args.region)
    return _local_target(args.port, getattr(args, "data_dir", None))


def _use(target: Target) -> None:
    """Point the layer at the target: the pynamodb models read their tables at import."""
    if "AWS_ENDPOINT_URL" not in target.environment:
        os.environ.pop("AWS_ENDPOINT_URL", None)
    os.environ.update(target.environment)


Command = Callable[[argparse.Namespace], int]
TargetedCommand = Callable[[argparse.Namespace, Target], int]


def _targeted(name: str) -> Callable[[TargetedCommand], Command]:
    """Resolve the target (local system or deployed stack) and point the layer at it first (a
    TargetError says why it cannot be reached; cli_errors prints it)."""

    def wrap(command: TargetedCommand) -> Command:
        def run(args: argparse.Namespace) -> int:
            target = resolve_target(args)
            _use(target)
            return command(args, target)

        return run

    return wrap


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _user_for(email: str, *, create: bool) -> Any:
    """The user with ``email``; UnknownEmailError if there is none and not ``create``."""
    from insightmesh.directory.email_users import find_or_create_user_by_email

    return find_or_create_user_by_email(email, create=create, added_by="cli")


def email_address(value: str) -> str:
    """``--email``: a whole address, normalised; otherwise a usage error before anything is reached."""
    from insightmesh.directory.email_users import InvalidEmailError, valid_email

    try:
        return valid_email(value)
    except InvalidEmailError as error:
        raise argparse.ArgumentTypeError(f"{error}: give a whole address, such as alice@example.com") from error


def lifetime(value: str) -> str:
    """``--expires-in``: checked when the command line is read (the value itself is parsed again later)."""
    from insightmesh.auth.tokens import parse_expires_in

    try:
        parse_expires_in(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error
    return value


def iso(moment: Any) -> str | None:
    """A stored time as ISO-8601 to the second (``2026-01-31T09:00:00+00:00``), or None."""
    return moment.isoformat(timespec="seconds") if moment is not None else None


@_targeted("admin bootstrap")
def cmd_bootstrap(args: argparse.Namespace, target: Target) -> int:
    with contextlib.redirect_stdout(sys.stderr):
        from insightmesh.directory import admin_tools

        user, changed = admin_tools.make_admin(args.email, actor=_actor())
    state = "is now an admin" if changed else "was already an admin"
    print(f"{args.email} ({user.user_id}) {state} on {target.description}", file=sys.stderr)
    return 0


@_targeted("token create")
def cmd_token_create(args: argparse.Namespace, target: Target) -> int:
    # The layer logs (JSON) to stdout, as Lambda expects; here stdout carries the token alone.
    with contextlib.redirect_stdout(sys.stderr):
        from insightmesh.auth.tokens import create_token, parse_expires_in
        from insightmesh.clock import utc_now
        from insightmesh.directory import admin_tools

        expires_in = parse_expires_in(args.expires_in)  # checked by the parser already
        if args.admin:
            user, _changed = admin_tools.make_admin(args.email, actor=_actor())
        else:
            user = _user_for(args.email, create=True)
        # The scopes are the token's for good: promoting its user later adds none.
        scopes = args.scope or (["admin:read", "admin:write"] if args.admin else ["admin:read"])
        expires_at = None if expires_in is None else utc_now() + expires_in
        try:
            plaintext, token = create_token(str(user.user_id), name=args.name or f"cli token for {args.email}",
                                            scopes=scopes, created_by=_actor(), expires_at=expires_at)
        except ValueError as error:
            raise CommandError(str(error), exit_code=EXIT_USAGE) from error
        admin_tools.audit_cli(action="token.create", target=f"user:{user.user_id}", target_label=user.email,
                              after={"token_id": token.token_id, "scopes": list(token.scopes), "name": token.name,
                                     "expires_at": expires_at.isoformat() if expires_at else None},
                              actor=_actor())
    until = f"expires {iso(expires_at)}" if expires_at else "never expires"
    print(f"token {token.token_id} for {args.email} on {target.description}, scopes {' '.join(token.scopes)}, "
          f"{until} (shown once; store it now):", file=sys.stderr)
    print(plaintext)
    return 0


@_targeted("token list")
def cmd_token_list(args: argparse.Namespace, target: Target) -> int:
    with contextlib.redirect_stdout(sys.stderr):
        from insightmesh.auth.tokens import list_tokens, token_state
        from insightmesh.clock import utc_now

        user = _user_for(args.email, create=False)
        tokens = list_tokens(str(user.user_id))
    now = utc_now()
    for token in tokens:
        print(json.dumps({"token_id": token.token_id, "name": token.name, "scopes": list(token.scopes or []),
                          "state": token_state(token, now), "created_at": iso(token.created_at),
                          "expires_at": iso(token.expires_at), "last_used_at": iso(token.last_used_at)}))
    return 0


@_targeted("token revoke")
def cmd_token_revoke(args: argparse.Namespace, target: Target) -> int:
    with contextlib.redirect_stdout(sys.stderr):
        from insightmesh.auth.tokens import revoke_token
        from insightmesh.directory import admin_tools

        user = _user_for(args.email, create=False)
        revoked = revoke_token(args.token_id, user_id=str(user.user_id))
        if revoked:
            admin_tools.audit_cli(action="token.revoke", target=f"user:{user.user_id}", target_label=user.email,
                                  after={"token_id": args.token_id}, actor=_actor())
    if not revoked:
        raise CommandError(f"{args.email} has no token {args.token_id}: `insightmesh token list --email "
                           f"{args.email}` shows their tokens")
    print(f"token {args.token_id} of {args.email} revoked", file=sys.stderr)
    return 0


@_targeted("login-link")
def cmd_login_link(args: argparse.Namespace, target: Target) -> int:
    from urllib.parse import urlencode

    with contextlib.redirect_stdout(sys.stderr):
        from insightmesh.auth.login_links import LINK_TTL, issue_link
        from insightmesh.directory import admin_tools

        try:
            user = _user_for(args.email, create=False)
        except (LookupError, ValueError) as error:
            print(f"insightmesh login-link: {error} (a link signs in an existing user only)", file=sys.stderr)
            return 1
        if not user.is_active:
            print(f"insightmesh login-link: {args.email} is deactivated", file=sys.stderr)
            return 1
        token = issue_link(user, created_by=_actor())
        admin_tools.audit_cli(action="auth.login_link.issue", target=f"user:{user.user_id}",
                              after={"valid_for_seconds": int(LINK_TTL.total_seconds())}, actor=_actor())
    if not target.console_url:
        print("insightmesh login-link: the stack has no ConsoleUrl or ApiUrl output", file=sys.stderr)
        return 1
    minutes = int(LINK_TTL.total_seconds() // 60)
    print(f"a single-use sign-in link for {args.email} on {target.description}, valid {minutes} minutes:",
          file=sys.stderr)
    print(f"{target.console_url}/login?{urlencode({'token': token})}")
    return 0


def add_parsers(sub: Any) -> None:
    def target_options(command: argparse.ArgumentParser) -> None:
        command.add_argument("--port", type=int, default=3000, help="the local dev server's port (default 3000)")
        command.add_argument("--stack-name", help="a deployed stack instead of the local system (uses your AWS "
                                                  "credentials and region)")
        command.add_argument("--region", default=os.environ.get("AWS_REGION"))
        command.add_argument("--template", default="infra/template.yaml")
        local_auth.add_data_dir_option(command)

    admin = sub.add_parser("admin", help="operator commands that never go over HTTP")
    admin_sub = admin.add_subparsers(dest="admin_command", required=True, metavar="{bootstrap}")
    bootstrap = admin_sub.add_parser("bootstrap", help="make a user (created if needed) an admin")
    bootstrap.add_argument("--email", required=True, type=email_address)
    target_options(bootstrap)
    bootstrap.set_defaults(run=cmd_bootstrap)

    token = sub.add_parser("token", help="API tokens for scripts")
    token_sub = token.add_subparsers(dest="token_command", required=True, metavar="{create,list,revoke}")
    create = token_sub.add_parser("create", help="create an API token and print it (once)")
    create.add_argument("--email", required=True, type=email_address)
    create.add_argument("--admin", action="store_true", help="make the user an admin; the token gets admin:read "
                                                             "and admin:write (else admin:read only)")
    create.add_argument("--scope", action="append", choices=["admin:read", "admin:write"],
                        help="a scope of the token (repeatable); it never gains others, even if its user is promoted")
    create.add_argument("--expires-in", default="90d", metavar="LIFETIME", type=lifetime,
                        help="the token's lifetime: days or hours such as 90d or 12h, or 'never' (default 90d)")
    create.add_argument("--name", help="a label for the token")
    target_options(create)
    create.set_defaults(run=cmd_token_create)
    listing = token_sub.add_parser("list", help="a user's tokens (ids, names, scopes, state, expiry; never the "
                                                "secret)")
    listing.add_argument("--email", required=True, type=email_address)
    target_options(listing)
    listing.set_defaults(run=cmd_token_list)
    revoke = token_sub.add_parser("revoke", help="revoke one of a user's tokens")
    revoke.add_argument("--email", required=True, type=email_address)
    revoke.add_argument("token_id")
    target_options(revoke)
    revoke.set_defaults(run=cmd_token_revoke)

    link = sub.add_parser("login-link", help="print a single-use console sign-in link (5 minutes) for an existing "
                                             "active user")
    link.add_argument("--email", required=True)
    target_options(link)
    link.set_defaults(run=cmd_login_link)
