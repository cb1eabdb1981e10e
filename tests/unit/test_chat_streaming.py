"""`insightmesh chat` with a streamed answer: the growing text is shown, and the reply is not taken
as final while the stream is open (issue 14)."""

from __future__ import annotations

from typing import Any

from insightmesh_local.chat import Watcher, in_progress


def test_a_streaming_message_is_in_progress() -> None:
    assert in_progress({"text": "half an ans", "streaming": True})
    assert not in_progress({"text": "the whole answer", "streaming": False})


class GrowingSandbox:
    """A streamed message that grows by one append per poll, for ``appends`` polls, then stops."""

    def __init__(self, appends: int) -> None:
        self.polls, self.appends = 0, appends

    def messages(self, *, channel: str, thread_ts: str | None = None, since: str | None = None) -> list[dict[str, Any]]:
        self.polls += 1
        grown = min(self.polls, self.appends)
        edits = [{"source": "chat.appendStream", "previous_text": " ".join(f"w{i}" for i in range(n)),
                  "text": " ".join(f"w{i}" for i in range(n + 1))} for n in range(1, grown)]
        return [{"ts": "1.000001", "source": "chat.startStream", "is_bot": True, "text": edits[-1]["text"] if edits
                 else "w0", "edits": edits, "streaming": self.polls < self.appends, "deleted": False}]


def test_the_watcher_shows_the_text_as_it_streams_and_waits_for_the_stream_to_stop() -> None:
    now = [0.0]
    printed: list[str] = []
    sandbox = GrowingSandbox(appends=8)

    def sleep(seconds: float) -> None:
        now[0] += seconds * 4  # each poll is far past the settle time: only the stream keeps it open

    watcher = Watcher(sandbox=sandbox, user="U1", print_fn=printed.append,  # type: ignore[arg-type]
                      settle=1.5, timeout=600, poll_interval=0.5, clock=lambda: now[0], sleep=sleep)
    [final] = watcher.watch(channel="D1")
    assert final["text"] == " ".join(f"w{i}" for i in range(8))
    assert printed[-1] == "insightmesh> " + final["text"]
    assert any(line.startswith("  … w0 w1") for line in printed[:-1])  # the text as it grew
