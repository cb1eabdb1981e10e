"""`insightmesh chat`: talk to the running local InsightMesh from a terminal, as Slack would.

Each line you type becomes what Slack would send the app: a DM ``message`` event (or an
``app_mention`` when the line starts with ``@insightmesh``), signed with the signing secret
exactly as Slack signs it and POSTed to the dev server's ``/slack/events``. The bot's replies
are read back from the Slack Web API development sandbox (``insightmesh_local.slack_sandbox``,
the ``SLACK_API_URL`` the worker posts to): the placeholder and its progress edits are shown as
they come (``  … text``) and the answer once it stops changing (``insightmesh> text``).

In-chat commands:
    /insightmesh <text>      send the slash command instead (form-encoded, signed, with a
                             response_url issued by the sandbox)
    /click <action_id> [v]   click a button of the bot's latest message in the thread
                             (a signed ``block_actions`` interaction)
    /thread <who> <text>     post as another person (a user id, or a name) in this thread, before
                             mentioning the bot there (insightmesh_local.chat_thread; in a channel)
    /progress, /stop         follow a research run's board, press its Stop button (chat_research)
    /new                     start a new thread        /help   this help        /quit   leave

The conversation stays in one thread (the first message's ts) unless ``--new-thread-each``.
Nothing here talks to Slack: the sandbox is a local stand-in.

Who you are: the Slack user ``--user`` (default ULOCALUSER), whose sandbox profile carries the
e-mail ``user-<id>@example.com`` (so ULOCALUSER is user-ULOCALUSER@example.com). ``--email E``
chats as a sandbox user whose profile carries E instead (registered in the sandbox before the
first message; its id is derived from E unless ``--user`` names one), so the assistant knows you
as the directory user with that address: the one an admin added to a group or granted an agent.
Replies are shown as Slack renders them: ``&lt;``, ``&gt;`` and ``&amp;`` as ``<``, ``>`` and ``&``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from insightmesh_local import chat_assistant, chat_research, chat_views, local_auth, slack_signing
from insightmesh_local.chat_thread import post_in_thread
from insightmesh_local.slack_signing import (
    FORM_CONTENT_TYPE,
    JSON_CONTENT_TYPE,
    app_mention_event,
    block_actions_body,
    event_callback,
    json_body,
    message_event,
    signed_headers,
    slash_command_body,
)

DEFAULT_PORT = 3000
DEFAULT_SIGNING_SECRET = "insightmesh-local-signing-secret"  # noqa: S105 - the local development default
DEFAULT_SANDBOX_URL = "http://127.0.0.1:3001/api/"
DEFAULT_BOT_TOKEN = "xoxb-insightmesh-local"  # noqa: S105 - accepted by the sandbox only
DEFAULT_USER = "ULOCALUSER"
MENTION_PREFIX = "@insightmesh"
POLL_INTERVAL = 0.2
# A reply whose message metadata says it is still in progress is not final even when quiet.
IN_PROGRESS = frozenset({"received", "posting", "placeholder", "pending", "queued", "in_progress", "progress",
                         "thinking", "working", "running"})

HELP = """\
  type a message          a DM to InsightMesh (@insightmesh ... sends an app_mention)
  /insightmesh <text>     the slash command
  /click <action_id> [v]  press a button of the bot's latest message in this thread
  /thread <who> <text>    post as another person in this thread (in a channel: --channel C...)
  /new                    start a new thread
  /quit                   leave (or Ctrl-D)"""


class ChatError(Exception):
    """Something the person at the terminal must fix (no dev server, no sandbox)."""


# -- the sandbox's inspection API ---------------------------------------------------------------------------
class SandboxClient:
    """The few ``/_sandbox/...`` calls the chat needs (loopback HTTP, JSON)."""

    def __init__(self, api_url: str, timeout: float = 10.0, *, secret: str | None = None) -> None:
        self.secret = secret  # the run's control secret (local_auth): /_sandbox/* refuses a call without it
        base = api_url.rstrip("/")
        self.api_url = base + "/"
        self.root = (base[: -len("/api")] if base.endswith("/api") else base) + "/"
        self.timeout = timeout

    def _call(self, path: str, body: dict[str, Any] | None = None, query: dict[str, str] | None = None) -> Any:
        url = self.root + "_sandbox/" + path + (("?" + urlencode(query)) if query else "")
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": JSON_CONTENT_TYPE}
        if self.secret:
            headers[local_auth.HEADER] = self.secret
        request = urllib.request.Request(url, data=data, method="GET" if body is None else "POST",  # noqa: S310
                                         headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 - loopback
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            if error.code == 401:
                raise ChatError(f"the Slack sandbox refused {path}: no valid secret (looked in "
                                f"${local_auth.ENVIRONMENT_VARIABLE} and {local_auth.TOKEN_FILE} in the data dir; "
                                "run from the folder you started `insightmesh dev` in, or pass its --data-dir)") \
                    from error
            raise ChatError(f"the Slack sandbox answered {error.code} to {path}: {error.read()[:200]!r}") from error
        except (urllib.error.URLError, OSError) as error:
            raise ChatError(f"no Slack sandbox at {self.api_url} ({error}); start `insightmesh dev` "
                            "or `python -m insightmesh_local.slack_sandbox`") from error

    def messages(self, *, channel: str, thread_ts: str | None = None, since: str | None = None) -> list[dict[str, Any]]:
        query = {"channel": channel}
        if thread_ts:
            query["thread_ts"] = thread_ts
        if since:
            query["since"] = since
        result = self._call("messages", query=query)
        return result if isinstance(result, list) else []

    def add_user_message(self, *, channel: str, user: str, text: str, thread_ts: str | None) -> str:
        body = {"channel": channel, "user": user, "text": text, "thread_ts": thread_ts}
        return str(self._call("messages", body)["ts"])

    def response_url(self, *, channel: str, user: str, message_ts: str | None = None,
                     thread_ts: str | None = None) -> str:
        return str(self._call("response_urls", {"channel": channel, "user": user, "message_ts": message_ts,
                                                "thread_ts": thread_ts})["response_url"])

    def new_ts(self) -> str:
        return str(self._call("ts", {})["ts"])

    def register_user(self, *, user_id: str, email: str) -> None:
        """A sandbox Slack user whose profile carries ``email`` (users.info answers with it)."""
        local_part = email.split("@", 1)[0]
        self._call("users", {"id": user_id, "email": email, "name": local_part, "real_name": local_part,
                             "display_name": local_part})


# -- watching replies -------------------------------------------------------------------------------------
def _texts(message: dict[str, Any]) -> list[str]:
    """Every text the message has had, oldest first (from the sandbox's edit history, so a
    progress update that came and went between two polls is still shown)."""
    edits = message.get("edits") or []
    if not edits:
        return [str(message.get("text") or "")]
    return [str(edits[0].get("previous_text") or ""), *(str(edit.get("text") or "") for edit in edits)]


def _state(message: dict[str, Any]) -> tuple[int, bool]:
    """(versions so far, deleted): changes whenever the message does."""
    return 1 + len(message.get("edits") or []), bool(message.get("deleted"))


def in_progress(message: dict[str, Any]) -> bool:
    """The reply says it is not final: it is being streamed, or its metadata ``event_payload`` has
    ``status``/``state`` in ``IN_PROGRESS``, or ``final``/``done`` false."""
    if message.get("deleted"):  # a removed message grows no more, even a stream never stopped
        return False
    if message.get("streaming"):  # chat.startStream until chat.stopStream: the text is still growing
        return True
    payload = (message.get("metadata") or {}).get("event_payload") or {}
    if not isinstance(payload, dict):
        return False
    status = str(payload.get("status") or payload.get("state") or "").lower()
    return status in IN_PROGRESS or payload.get("final") is False or payload.get("done") is False


def buttons_of(message: dict[str, Any]) -> list[dict[str, Any]]:
    """Every button of the message's blocks: [{action_id, value, block_id, text}]."""
    found = []
    for block in message.get("blocks") or []:
        elements = block.get("elements") or []
        if block.get("type") == "section" and isinstance(block.get("accessory"), dict):
            elements = [*elements, block["accessory"]]
        for element in elements:
            if isinstance(element, dict) and element.get("type") == "button" and element.get("action_id"):
                found.append({"action_id": element["action_id"], "value": element.get("value"),
                              "block_id": block.get("block_id"),
                              "text": (element.get("text") or {}).get("text") or element["action_id"]})
    return found


@dataclass
class Watcher:
    """Shows the bot's messages as they appear and change; returns when they settle."""

    sandbox: SandboxClient
    user: str
    print_fn: Callable[[str], None]
    settle: float = 1.5
    timeout: float = 60.0
    poll_interval: float = POLL_INTERVAL
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep

    def watch(self, *, channel: str, thread_ts: str | None = None, since: str | None = None,
              known: dict[str, tuple[int, bool]] | None = None) -> list[dict[str, Any]]:
        """Wait for new or changed bot messages and print them: each superseded text as progress
        once, the latest as the reply once nothing has changed for ``settle`` seconds (and no
        reply says it is in progress). ``known`` (ts → state already shown) is updated in place,
        so a conversation only ever sees what is new. Returns the messages shown as replies."""
        known = {} if known is None else known
        pending: dict[str, dict[str, Any]] = {}  # ts → the latest state, not yet shown as a reply
        shown: dict[str, int] = {}  # ts → how many of its texts were shown
        started = self.clock()
        last_change: float | None = None
        while True:
            for message in self.sandbox.messages(channel=channel, thread_ts=thread_ts, since=since):
                if message.get("source") == "user" or (message.get("ephemeral") and
                                                       message.get("ephemeral_for") not in (self.user, "unknown")):
                    continue
                ts, state = message["ts"], _state(message)
                if known.get(ts) == state or (ts in pending and _state(pending[ts]) == state):
                    continue
                texts = _texts(message)
                first = shown.get(ts, known[ts][0] if ts in known else 0)
                for index in range(first, len(texts) - 1):
                    if texts[index] and (index == 0 or texts[index] != texts[index - 1]):
                        self.print_fn("  … " + _indent(texts[index], "    "))
                shown[ts] = max(first, len(texts) - 1)
                pending[ts] = message
                last_change = self.clock()
            now = self.clock()
            if last_change is not None and now - last_change >= self.settle and \
                    not any(in_progress(message) for message in pending.values()):
                break
            if now - started >= self.timeout:
                if pending:
                    self.print_fn(f"  (still changing after {self.timeout:g}s; showing the latest)")
                else:
                    self.print_fn(f"  (no reply from InsightMesh within {self.timeout:g}s: is the worker running? "
                                  "see the `insightmesh dev` log)")
                break
            self.sleep(self.poll_interval)
        final = sorted(pending.values(), key=lambda m: slack_ts_key(m["ts"]))
        for message in final:
            known[message["ts"]] = _state(message)
            self._final(message)
        return final

    def _final(self, message: dict[str, Any]) -> None:
        if message.get("deleted"):
            self.print_fn("  (InsightMesh removed a message)")
            return
        who = "insightmesh (only you)> " if message.get("ephemeral") else "insightmesh> "
        files = [file for file in message.get("files") or [] if isinstance(file, dict)]
        text = message.get("text") or ("" if files else _blocks_text(message))
        if text:
            self.print_fn(who + _indent(text, " " * len(who)))
        for file in files:  # a file shared in the thread (files_upload_v2): where to open it
            self.print_fn(("" if text else who) + "  " + file_line(file))
        buttons = buttons_of(message)
        if buttons:
            self.print_fn("  [" + " | ".join(f"{b['text']} → /click {b['action_id']}" for b in buttons) + "]")


def file_line(file: dict[str, Any]) -> str:
    """A shared file as the chat shows it: name, size and the sandbox URL that serves it (with the
    bot token, as Slack's url_private)."""
    size = int(file.get("size") or 0)
    shown = f"{size} B" if size < 1024 else f"{size / 1024:.1f} KB" if size < 1024 * 1024 else \
        f"{size / 1024 / 1024:.1f} MB"
    title = file.get("title") or ""
    name = str(file.get("name") or file.get("id") or "file")
    label = f"{name} — {title}" if title and title != name else name
    return f"[file] {label} ({shown}) {file.get('url_private') or ''}".rstrip()


def _indent(text: str, prefix: str) -> str:
    return unescape(text).replace("\n", "\n" + prefix)


def unescape(text: str) -> str:
    """Slack's message text as Slack shows it: the three escapes Slack uses (``&lt;``, ``&gt;``,
    ``&amp;``) become the characters; nothing else is touched (``&quot;`` is not Slack's)."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _blocks_text(message: dict[str, Any]) -> str:
    texts = []
    for block in message.get("blocks") or []:
        text = block.get("text")
        if isinstance(text, dict) and text.get("text"):
            texts.append(str(text["text"]))
    return "\n".join(texts) or "(a message without text)"


def slack_ts_key(ts: str) -> tuple[int, int]:
    seconds, _, micros = ts.partition(".")
    return int(seconds), int((micros or "0").ljust(6, "0")[:6])


# -- the conversation -------------------------------------------------------------------------------------
@dataclass
class Conversation:
    args: argparse.Namespace
    sandbox: SandboxClient
    watcher: Watcher
    print_fn: Callable[[str], None]
    bot_user_id: str
    team_id: str
    api_app_id: str = slack_signing.DEFAULT_APP_ID
    thread_ts: str | None = None
    known: dict[str, tuple[int, bool]] = field(default_factory=dict)
    last_replies: list[dict[str, Any]] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.args.port}"

    def post(self, path: str, body: bytes, content_type: str) -> tuple[int, bytes]:
        headers = signed_headers(self.args.signing_secret, body, content_type)
        request = urllib.request.Request(self.base + path, data=body, headers=headers, method="POST")  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback only
                return int(response.status), response.read()
        except urllib.error.HTTPError as error:
            return int(error.code), error.read()
        except (urllib.error.URLError, OSError) as error:
            raise ChatError(f"no InsightMesh dev server on port {self.args.port} ({error}); "
                            "start `insightmesh dev` (or pass --port)") from error

    def _refused(self, path: str, status: int, body: bytes) -> bool:
        if 200 <= status < 300:
            return False
        self.print_fn(f"  (POST {path} answered {status}: {body.decode('utf-8', 'replace')[:300]})")
        return True

    def say(self, line: str) -> None:
        channel, user = self.args.channel, self.args.user
        mention = line.lower().startswith(MENTION_PREFIX)
        text = line[len(MENTION_PREFIX):].strip() if mention else line
        if mention:
            text = f"<@{self.bot_user_id}> {text}".rstrip()
        thread_ts = None if self.args.new_thread_each else self.thread_ts
        ts = self.sandbox.add_user_message(channel=channel, user=user, text=text, thread_ts=thread_ts)
        if thread_ts is None:
            self.thread_ts = thread_ts_now = ts
            self.known.clear()
        else:
            thread_ts_now = thread_ts
        if mention:
            event = app_mention_event(user, channel, text, ts, thread_ts, self.bot_user_id, team=self.team_id)
        else:
            event = message_event(user, channel, text, ts, thread_ts, team=self.team_id,
                                  parent_user_id=user if thread_ts else None)
        events = [event]
        if mention and not channel.startswith("D"):
            # Slack sends a mention in a channel twice: as app_mention and as the channel's message.
            events.append(message_event(user, channel, text, ts, thread_ts, team=self.team_id))
        for one in events:
            body = json_body(event_callback(self.team_id, self.api_app_id, one, bot_user_id=self.bot_user_id))
            status, answer = self.post("/slack/events", body, JSON_CONTENT_TYPE)
            if self._refused("/slack/events", status, answer):
                return
        self.last_replies = self.watcher.watch(channel=channel, thread_ts=thread_ts_now, known=self.known) or \
            self.last_replies

    def command(self, text: str) -> None:
        channel, user = self.args.channel, self.args.user
        since = self.sandbox.new_ts()
        response_url = self.sandbox.response_url(channel=channel, user=user)
        body = slash_command_body(user_id=user, channel_id=channel, text=text, response_url=response_url,
                                  team_id=self.team_id, api_app_id=self.api_app_id)
        status, answer = self.post("/slack/commands", body, FORM_CONTENT_TYPE)
        if self._refused("/slack/commands", status, answer):
            return
        self._print_ack(answer)
        self.watcher.watch(channel=channel, since=since)

    def click(self, action_id: str, value: str | None) -> None:
        for message in reversed(self.last_replies):
            button = next((b for b in buttons_of(message) if b["action_id"] == action_id), None)
            if button is not None:
                break
        else:
            self.print_fn(f"  (no button {action_id!r} on the bot's latest reply)")
            return
        channel, user = self.args.channel, self.args.user
        thread_ts = message.get("thread_ts") or self.thread_ts
        response_url = self.sandbox.response_url(channel=channel, user=user, message_ts=message["ts"],
                                                 thread_ts=thread_ts)
        body = block_actions_body(user_id=user, channel_id=channel, message_ts=message["ts"], action_id=action_id,
                                  value=value if value is not None else button["value"], block_id=button["block_id"],
                                  response_url=response_url, thread_ts=thread_ts,
                                  message_text=message.get("text") or "", message_blocks=message.get("blocks"),
                                  button_text=button["text"], team_id=self.team_id, api_app_id=self.api_app_id,
                                  bot_user_id=self.bot_user_id)
        status, answer = self.post("/slack/interactions", body, FORM_CONTENT_TYPE)
        if self._refused("/slack/interactions", status, answer):
            return
        self._print_ack(answer)
        self.last_replies = self.watcher.watch(channel=channel, thread_ts=thread_ts, known=self.known) or \
            self.last_replies

    def _print_ack(self, answer: bytes) -> None:
        text = answer.decode("utf-8", "replace").strip()
        if not text:
            return
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError:
            parsed = {"text": text}
        if isinstance(parsed, dict) and parsed.get("text"):
            who = "insightmesh (only you)> " if parsed.get("response_type", "ephemeral") == "ephemeral" \
                else "insightmesh> "
            self.print_fn(who + _indent(str(parsed["text"]), " " * len(who)))


def sandbox_url_for(port: int) -> str:
    """The sandbox `insightmesh dev --port PORT` starts: 127.0.0.1:PORT+1 (3001 by default)."""
    return f"http://127.0.0.1:{port + 1}/api/"


def dev_sandbox_url(port: int, data_dir: str | None = None) -> str:
    """The sandbox of the `insightmesh dev` on ``port``, as its /_local/stack says (PORT+1 unless that
    port was taken when it started, then a free one); PORT+1 when it cannot be asked."""
    try:
        stack = local_auth.ControlClient(port, data_dir).request("stack", timeout=5)
    except local_auth.ControlError:
        return sandbox_url_for(port)
    url = stack.get("slack_api_url") if isinstance(stack, dict) else None
    return str(url) if url else sandbox_url_for(port)


def _bot_identity(args: argparse.Namespace) -> tuple[str, str]:
    client = WebClient(base_url=args.sandbox_url, token=args.token, timeout=10)
    try:
        identity = client.auth_test()
    except SlackApiError as error:
        raise ChatError(f"auth.test at {args.sandbox_url} failed: {error.response.get('error')}") from error
    except (urllib.error.URLError, OSError) as error:
        raise ChatError(f"no Slack sandbox at {args.sandbox_url} ({error}); start `insightmesh dev` "
                        "or `python -m insightmesh_local.slack_sandbox`") from error
    return str(identity["user_id"]), str(identity.get("team_id") or slack_signing.DEFAULT_TEAM_ID)


def _email_of(args: argparse.Namespace) -> str:
    """The e-mail the sandbox's users.info gives the chat's user (what the assistant will know them by)."""
    client = WebClient(base_url=args.sandbox_url, token=args.token, timeout=10)
    try:
        profile = client.users_info(user=args.user)["user"].get("profile") or {}
    except (SlackApiError, urllib.error.URLError, OSError, KeyError):
        return "e-mail unknown"
    return str(profile.get("email") or "no e-mail")


def user_for_email(email: str) -> str:
    """The sandbox Slack user id ``--email`` chats as when ``--user`` is not given: stable per address."""
    return "U" + hashlib.sha256(email.encode()).hexdigest()[:10].upper()


def chat_email(value: str) -> str:
    """``--email``: a whole address (the directory's rule), lower-cased."""
    from insightmesh.directory.email_users import InvalidEmailError, valid_email

    try:
        return valid_email(value)
    except InvalidEmailError as error:
        raise argparse.ArgumentTypeError(f"{error}: give a whole address, such as alice@example.com") from error


def run_chat(args: argparse.Namespace, input_fn: Callable[[str], str] = input,
             print_fn: Callable[[str], None] = print, err_fn: Callable[[str], None] | None = None) -> int:
    """The chat loop; returns the exit status (0, or 1 when the sandbox or dev server is missing, said
    in one line through ``err_fn``: stderr for the command, ``print_fn`` when not given)."""
    email = getattr(args, "email", None)
    args.user = args.user or (user_for_email(email) if email else DEFAULT_USER)
    args.channel = args.channel or f"D{args.user}"
    args.sandbox_url = args.sandbox_url or dev_sandbox_url(args.port, args.data_dir)
    sandbox = SandboxClient(args.sandbox_url, secret=local_auth.read_secret(args.data_dir))
    try:
        bot_user_id, sandbox_team = _bot_identity(args)
        if email:
            sandbox.register_user(user_id=args.user, email=email)
    except ChatError as error:
        (err_fn or print_fn)(f"insightmesh chat: {error}")
        return 1
    watcher = Watcher(sandbox, args.user, print_fn, settle=args.settle, timeout=args.timeout)
    chat = Conversation(args, sandbox, watcher, print_fn, bot_user_id=bot_user_id, team_id=args.team or sandbox_team)
    who = f"{args.user} <{email or _email_of(args)}>"
    print_fn(f"InsightMesh chat as {who} in {args.channel} → http://127.0.0.1:{args.port}/slack/* ; "
             f"replies from the Slack sandbox {args.sandbox_url} (a local stand-in, not Slack). /help for help.")
    if chat_assistant.enabled(chat):  # --assistant: Slack's AI app container (insightmesh_local.chat_assistant)
        try:
            chat_assistant.open_thread(chat)
        except ChatError as error:
            (err_fn or print_fn)(f"insightmesh chat: {error}")
            return 1
    while True:
        try:
            line = input_fn("you> ").strip()
        except (EOFError, KeyboardInterrupt):
            print_fn("")
            return 0
        if not line:
            continue
        try:
            if line in ("/quit", "/exit"):
                return 0
            if line == "/help":
                print_fn(HELP + "\n" + chat_views.HELP + "\n" + chat_research.HELP
                         + ("\n" + chat_assistant.HELP if chat_assistant.enabled(chat) else ""))
            elif chat_assistant.command(chat, line) or chat_views.command(chat, line) or \
                    chat_research.command(chat, line):  # /progress, /stop (insightmesh_local.chat_research)
                pass
            elif line == "/new":
                chat.thread_ts = None
                chat.known.clear()
                print_fn("  (the next message starts a new thread)")
            elif line.startswith("/insightmesh"):
                chat.command(line[len("/insightmesh"):].strip())
            elif line.startswith("/thread"):
                post_in_thread(chat, line)
            elif line.startswith("/click"):
                parts = line.split(maxsplit=2)
                if len(parts) < 2:
                    print_fn("  usage: /click <action_id> [value]")
                else:
                    chat.click(parts[1], parts[2] if len(parts) > 2 else None)
                    chat_views.after_click(chat, parts[1])  # 👎: the reason modal (insightmesh_local.chat_views)
            elif line.startswith("/"):
                print_fn(f"  (unknown command {line.split()[0]}; /help lists them)")
            else:
                chat.say(line)
                if chat_assistant.enabled(chat):
                    chat_assistant.after_answer(chat)
                chat_research.after_answer(chat)  # a research run started: follow its board
        except ChatError as error:
            (err_fn or print_fn)(f"insightmesh chat: {error}")
            return 1
        except KeyboardInterrupt:
            print_fn("  (stopped waiting)")


def cmd_chat(args: argparse.Namespace) -> int:
    return run_chat(args, err_fn=lambda line: print(line, file=sys.stderr, flush=True))


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``chat`` to the ``insightmesh`` command's subparsers (``build_parser``'s ``sub``)."""
    chat: argparse.ArgumentParser = subparsers.add_parser(
        "chat", help="talk to the running local InsightMesh from the terminal, as Slack would",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    chat.add_argument("--port", type=int, default=DEFAULT_PORT, help="port of `insightmesh dev` (default 3000)")
    chat.add_argument("--signing-secret", default=os.environ.get("SLACK_SIGNING_SECRET") or DEFAULT_SIGNING_SECRET,
                      help="signing secret the dev server verifies with (default: $SLACK_SIGNING_SECRET or the "
                           "local development secret)")
    chat.add_argument("--sandbox-url", default=os.environ.get("SLACK_API_URL") or None,
                      help="Slack Web API sandbox (default: $SLACK_API_URL, else the one `insightmesh dev` "
                           f"starts on port PORT+1: {DEFAULT_SANDBOX_URL} for the default port)")
    chat.add_argument("--token", default=os.environ.get("SLACK_BOT_TOKEN") or DEFAULT_BOT_TOKEN,
                      help="bot token presented to the sandbox (default: $SLACK_BOT_TOKEN or a local token)")
    chat.add_argument("--user", default=None, help=f"your Slack user id (default {DEFAULT_USER}, whose e-mail is "
                                                   f"user-{DEFAULT_USER}@example.com; with --email, one derived "
                                                   "from the address)")
    chat.add_argument("--email", type=chat_email, default=None,
                      help="chat as the sandbox Slack user whose profile carries this e-mail, i.e. as the "
                           "directory user with that address (the one you added to a group or granted an agent)")
    local_auth.add_data_dir_option(chat)
    chat.add_argument("--channel", default=None, help="channel id (default: the DM channel D<user>)")
    chat.add_argument("--team", default=None, help="team id (default: the sandbox's)")
    chat.add_argument("--new-thread-each", action="store_true", help="every line starts a new thread")
    chat.add_argument("--assistant", action="store_true",
                      help="chat in Slack's AI app container: open an assistant thread (greeting, suggested "
                           "prompts), then show its statuses and title; /prompt N, /context C…")
    chat.add_argument("--assistant-context", default=None, metavar="CHANNEL",
                      help="with --assistant: the channel you are looking at when the container opens")
    chat.add_argument("--settle", type=float, default=1.5,
                      help="seconds a reply must stay unchanged to count as final (default 1.5)")
    chat.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for a reply (default 60)")
    chat.add_argument("--follow-research", type=float, default=chat_research.FOLLOW_SECONDS, metavar="SECONDS",
                      help="after a reply that starts a research run, follow its progress board for up to this "
                           f"many seconds (default {chat_research.FOLLOW_SECONDS:g}; 0: don't; /progress follows)")
    chat.set_defaults(run=cmd_chat)
    return chat


__all__ = ["SandboxClient", "Watcher", "add_parser", "buttons_of", "dev_sandbox_url", "in_progress", "run_chat",
           "sandbox_url_for"]
