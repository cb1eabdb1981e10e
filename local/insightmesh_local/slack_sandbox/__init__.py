"""A Slack Web API stand-in for development and tests — a SANDBOX, NOT Slack.

Nothing sent here reaches Slack or any person: this is a small threaded HTTP server on
127.0.0.1 that speaks Slack's Web API wire format well enough for InsightMesh's worker (through
``slack_sdk.WebClient(base_url=sandbox.url)``) and records everything for tests and for
``insightmesh chat``. Every API response carries ``"warning": "development_sandbox_not_slack"``
and an ``X-InsightMesh-Sandbox`` header, and its log lines say so too.

Wire format (as Slack)
    ``POST /api/<method>`` (``GET`` too, with query parameters, as slack_sdk sends
    ``users.info`` and ``conversations.replies``); ``application/x-www-form-urlencoded`` or
    JSON bodies; the token in ``Authorization: Bearer xox...`` (or a ``token`` form field).
    Responses are HTTP 200 ``{"ok": true, ...}`` or ``{"ok": false, "error": "<code>"}``;
    rate limiting is HTTP 429 with ``Retry-After`` and ``{"ok": false, "error": "ratelimited"}``.

Methods
    ``auth.test``, ``chat.postMessage`` (channel, text, blocks, thread_ts, metadata),
    ``chat.update``, ``chat.postEphemeral``, ``chat.delete``, ``users.info``,
    ``users.list`` (``limit``: 0 or absent = the sandbox's page size of 1000, capped at 1000;
    ``cursor``: the previous page's ``response_metadata.next_cursor``, an empty string on the last
    page; members are the registered users in registration order; a cursor the sandbox did not
    issue answers ``invalid_cursor``), ``conversations.replies`` (metadata only with
    ``include_all_metadata``; ``limit``/``cursor``), ``reactions.add``/``reactions.remove`` and
    ``api.test``, ``conversations.info`` and ``conversations.members`` (see ``/_sandbox/channels``),
    ``conversations.history`` (newest first, from the stored messages: :mod:`.history`),
    ``assistant.threads.setStatus`` / ``setSuggestedPrompts`` / ``setTitle`` (the AI app
    container, in a DM's thread: :mod:`.assistant`; ``GET /_sandbox/assistant?channel=&thread_ts=``
    shows what they set, ``POST /_sandbox/assistant`` {user, context_channel_id} opens a thread,
    ``POST /_sandbox/assistant/context`` {channel, thread_ts, context_channel_id} moves its context);
    any other method answers ``unknown_method``. Failure rules apply to every
    method, ``users.list`` included.

Files
    ``GET /files-pri/<id>/<name>`` serves a file registered with ``SlackSandbox.add_file(name,
    content, mimetype)`` (which returns the file object a message event carries, with
    ``url_private_download``) to a request bearing a bot token, as Slack's file host does; without
    one, 403. Downloads are recorded as calls of ``files.download``.
    Uploads as slack_sdk's ``files_upload_v2`` makes them (:mod:`.uploads`):
    ``files.getUploadURLExternal`` (an upload URL on the sandbox, ``POST /upload/v1/<token>``),
    the bytes POSTed there (recorded as ``files.upload``), ``files.completeUploadExternal`` (the
    file shared into the channel or thread as a bot message with ``files``), and ``files.info``.

``response_url``
    ``POST /response/<id>`` takes Slack's response_url JSON (text, blocks, response_type,
    replace_original, delete_original, thread_ts). ``POST /_sandbox/response_urls`` (or
    ``SlackSandbox.response_url(...)``) issues one bound to a channel, user and message;
    an unissued id is accepted too (recorded without a channel unless the body names one).

Inspection and control (not Slack; for tests and ``insightmesh chat``)
    Every request needs a loopback ``Host`` and no foreign ``Origin`` (403); ``/_sandbox/*`` (but
    ``health``) also needs the run's secret in ``X-InsightMesh-Local-Token`` (401), as
    ``insightmesh dev``'s ``/_local/*`` does (see ``local_auth``). ``SlackSandbox(secret=...)``
    sets it (default: ``$INSIGHTMESH_LOCAL_TOKEN`` or a new one, in ``.secret``).
    ``GET  /_sandbox/messages?channel=&thread_ts=&since=``  recorded messages, oldest first
    ``POST /_sandbox/messages``   record a message a person wrote {channel, user, text, thread_ts}
    ``GET  /_sandbox/calls?method=``  every API call (token never recorded)
    ``POST /_sandbox/reset``      forget messages, calls, users, failures, response URLs
    ``POST /_sandbox/fail``       {"method", "mode": ratelimit|error|delay, "count", "retry_after",
                                   "delay", "error", "status"}: for the next ``count`` calls of
                                   ``method`` ("*" for any) answer 429, an ok:false error, or do
                                   the call (recording its message) and only then wait ``delay``
                                   seconds before answering (a worker that posts then times out);
                                   with "channel", only calls naming that channel count
    ``GET  /_sandbox/fail``       pending failure rules
    ``POST /_sandbox/users``      register users for users.info and users.list (a user object, a
                                   list, or {"users": [...]}; fields id, name, real_name,
                                   display_name, email (null: none), is_bot, deleted, is_restricted,
                                   is_admin, profile); re-registering an id replaces it in place.
                                   Other U.../W... ids get a generated users.info profile with the
                                   e-mail ``user-<id>@example.com`` (they are not in users.list)
    ``POST /_sandbox/users/generate``  {"count", "domain", "start", "id_prefix"}: register ``count``
                                   (≤ 100000) generated people at once (U00000001, user1@<domain>...)
    ``POST /_sandbox/users/remove``    {"ids": [...]}: forget registered users (gone from users.list)
    ``POST /_sandbox/channels``   {"id", "members", "kind": public|private|mpim|im, "ext_shared",
                                   "user" (an im's person), "bot_member" (default true)}: a
                                   conversation for conversations.info
                                   and conversations.members (an unregistered C/G id is a public
                                   channel of the bot and every registered user)
    ``POST /_sandbox/ts``         allocate a fresh message timestamp (a "since" reference point)
    ``GET  /_sandbox/health``     liveness

In-process: ``SlackSandbox(port=0).start()``, ``.url`` (``http://127.0.0.1:<port>/api/``),
``.messages(...)``, ``.calls(...)``, ``.fail(...)``, ``.add_users(...)``, ``.generate_users(...)``,
``.remove_users(...)``, ``.reset()``, ``.stop()``.
Standalone: ``python -m insightmesh_local.slack_sandbox --port 3001``.

Modules: ``state`` (records and the store), ``web_api`` (Slack's methods over it, ``SandboxState``),
``control`` (``/_sandbox/*``), ``server`` (HTTP, ``SlackSandbox``, ``main``).
"""

from insightmesh_local.slack_sandbox.server import SlackSandbox, main
from insightmesh_local.slack_sandbox.state import (
    SANDBOX_HEADER,
    SANDBOX_HEADER_VALUE,
    SANDBOX_WARNING,
    FailRule,
    Message,
    Reply,
    SandboxError,
)
from insightmesh_local.slack_sandbox.web_api import SandboxState

__all__ = ["SANDBOX_HEADER", "SANDBOX_HEADER_VALUE", "SANDBOX_WARNING", "FailRule", "Message", "Reply", "SandboxError",
           "SandboxState", "SlackSandbox", "main"]
