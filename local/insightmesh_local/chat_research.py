"""`insightmesh chat` and research runs: the progress board as it changes, and its Stop button.

A research run (``profile Acme Corp``) answers at once ("Researching *Acme Corp*…") and then keeps
one message in the thread up to date: the research board (``insightmesh.research.progress``, found
by its message metadata), a task list with a **Stop** button. After such an answer the chat follows
that board: each task line that changes is printed as progress (``  … ⏳ People — reading pages``),
and once the board is closed, what the run posted after it (the summary, the PDF) is shown as
replies. Ctrl-C returns to the prompt; the run goes on.

    /progress   follow the research board of this thread (again)
    /stop       press the board's Stop button, as clicking it in Slack does (a signed block_actions)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from insightmesh.research.progress import EVENT_TYPE, STOP_ACTION

if TYPE_CHECKING:
    from insightmesh_local.chat import Conversation

HELP: Final = """\
  /progress               follow the research board of this thread (task list, then the report)
  /stop                   press the research board's Stop button"""
FOLLOW_SECONDS: Final = 900.0  # a run ends within minutes; the chat stops following after this
STARTED_PREFIXES: Final = ("Researching ",)


def board_of(chat: Conversation) -> dict[str, Any] | None:
    """The newest research board in this conversation's thread, as the sandbox holds it."""
    if not chat.thread_ts:
        return None
    boards = [message for message in chat.sandbox.messages(channel=chat.args.channel, thread_ts=chat.thread_ts)
              if (message.get("metadata") or {}).get("event_type") == EVENT_TYPE and not message.get("deleted")]
    return boards[-1] if boards else None


def versions(board: dict[str, Any], seen: int) -> list[list[dict[str, Any]]]:
    """The board's blocks in every version after the first ``seen`` (the sandbox keeps each
    edit's blocks, so a state that came and went between two polls is still shown)."""
    edits = board.get("edits") or []
    # Version 0 is the message as posted: the blocks the first edit replaced (the sandbox records both).
    first = (edits[0].get("previous_blocks") or []) if edits else board.get("blocks") or []
    every = [first, *((edit.get("blocks") or []) for edit in edits)]
    return every[seen:]


def board_lines(board: dict[str, Any]) -> list[str]:
    """The board as Slack shows it: the heading, a line per task, then the footer."""
    return blocks_lines(board.get("blocks") or [])


def blocks_lines(blocks: list[dict[str, Any]]) -> list[str]:
    lines: list[str] = []
    for block in blocks:
        if block.get("type") == "section":
            lines.append(str((block.get("text") or {}).get("text") or ""))
        elif block.get("type") == "context":
            lines += [str(element.get("text") or "") for element in block.get("elements") or []]
    return [line.replace("*", "") for line in lines if line]


def closed(board: dict[str, Any]) -> bool:
    return bool(((board.get("metadata") or {}).get("event_payload") or {}).get("closed"))


def follow_seconds(chat: Conversation) -> float:
    return float(getattr(chat.args, "follow_research", FOLLOW_SECONDS))


def follow(chat: Conversation, *, timeout: float | None = None) -> bool:
    """Print the board's changes until it is closed (True) or ``timeout`` (``--follow-research``)
    passes (False), then the replies that came after it."""
    timeout = follow_seconds(chat) if timeout is None else timeout
    watcher = chat.watcher
    started, shown, seen, announced = watcher.clock(), list[str](), 0, False
    while True:
        board = board_of(chat)
        if board is not None:
            if not announced:
                chat.print_fn("  (following the research: Ctrl-C returns to the prompt, /stop stops it)")
                announced = True
            for blocks in versions(board, seen):
                lines = blocks_lines(blocks)
                for line in lines:
                    if line not in shown:
                        chat.print_fn("  … " + line)
                shown, seen = lines, seen + 1
            if closed(board):
                chat.known[str(board["ts"])] = (1 + len(board.get("edits") or []), False)
                chat.last_replies = watcher.watch(channel=chat.args.channel, thread_ts=chat.thread_ts,
                                                  known=chat.known) or chat.last_replies
                return True
        if watcher.clock() - started >= timeout:
            chat.print_fn(f"  (the research was still running after {timeout:g}s; /progress follows it again)")
            return False
        watcher.sleep(max(watcher.poll_interval, 0.5))


def started_research(chat: Conversation) -> bool:
    return any(str(reply.get("text") or "").startswith(STARTED_PREFIXES) for reply in chat.last_replies)


def after_answer(chat: Conversation) -> None:
    """After a reply that started a research run: follow its board."""
    if started_research(chat) and follow_seconds(chat) > 0:
        follow(chat)


def stop(chat: Conversation) -> None:
    board = board_of(chat)
    if board is None or not any(element.get("action_id") == STOP_ACTION for block in board.get("blocks") or []
                                for element in block.get("elements") or []):
        chat.print_fn("  (no research with a Stop button in this thread)")
        return
    chat.last_replies = [*chat.last_replies, board]
    chat.click(STOP_ACTION, None)  # the worker answers the presser privately, then edits the board
    chat.last_replies = chat.watcher.watch(channel=chat.args.channel, thread_ts=chat.thread_ts,
                                           known=chat.known) or chat.last_replies


def command(chat: Conversation, line: str) -> bool:
    """Handle /progress and /stop; False for any other line."""
    word = line.split(maxsplit=1)[0] if line.strip() else ""
    if word == "/progress":
        if board_of(chat) is None:
            chat.print_fn("  (no research board in this thread)")
        else:
            follow(chat, timeout=max(follow_seconds(chat), FOLLOW_SECONDS))
        return True
    if word == "/stop":
        stop(chat)
        return True
    return False


__all__ = ["HELP", "after_answer", "board_lines", "command", "follow", "stop"]
