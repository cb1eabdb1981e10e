"""The bounds of the thread reader (insightmesh.slack.history.bound): N messages, M characters,
what is cut first (the oldest replies; the thread's parent last), and names in the text."""

from __future__ import annotations

from insightmesh.slack.history import ELLIPSIS, MIN_PARTIAL_CHARS, Bounds, Line, Names, bound, plain_text


def lines(count: int, size: int = 10, parent: str = "parent") -> list[Line]:
    return [Line("1.0", "Ann", parent)] + [Line(f"{i + 2}.0", f"P{i}", f"m{i}".ljust(size, "x"))
                                           for i in range(count)]


def test_the_last_n_messages_are_kept_with_the_parent_and_the_older_ones_counted() -> None:
    transcript = bound(lines(10), Bounds(max_messages=4, max_chars=10_000), keep_first=True)

    assert [line.author for line in transcript.lines] == ["Ann", "P7", "P8", "P9"]  # parent, then the newest
    assert transcript.omitted == 7
    assert transcript.render().splitlines()[0] == "(7 earlier message(s) not shown)"


def test_everything_fits_nothing_is_cut() -> None:
    transcript = bound(lines(3), Bounds(max_messages=50, max_chars=10_000), keep_first=True)

    assert [line.text for line in transcript.lines] == ["parent", "m0xxxxxxxx", "m1xxxxxxxx", "m2xxxxxxxx"]
    assert transcript.omitted == 0
    assert "not shown" not in transcript.render()


def test_the_character_bound_drops_the_oldest_replies_first() -> None:
    # each reply renders as "Pn: " + 10 chars = 14, plus a newline: 15; the parent "Ann: parent" 11 + 1
    transcript = bound(lines(10), Bounds(max_messages=50, max_chars=12 + 3 * 15), keep_first=True)

    assert [line.author for line in transcript.lines] == ["Ann", "P7", "P8", "P9"]
    assert transcript.omitted == 7
    assert len(transcript.body()) <= 12 + 3 * 15


def test_a_long_parent_is_shortened_to_a_third_of_the_budget_and_kept() -> None:
    transcript = bound(lines(2, parent="p" * 5000), Bounds(max_messages=50, max_chars=900), keep_first=True)

    parent = transcript.lines[0]
    assert parent.author == "Ann" and parent.text.endswith(ELLIPSIS)
    assert len(parent.render()) <= 300
    assert [line.author for line in transcript.lines[1:]] == ["P0", "P1"]


def test_the_newest_message_that_does_not_fit_whole_is_shortened_and_older_ones_dropped() -> None:
    replies = [Line("2.0", "Old", "old"), Line("3.0", "Bob", "b" * 1000), Line("4.0", "Cy", "newest")]
    transcript = bound(replies, Bounds(max_messages=50, max_chars=400), keep_first=False)

    assert [line.author for line in transcript.lines] == ["Bob", "Cy"]
    assert transcript.lines[0].text.endswith(ELLIPSIS) and transcript.lines[0].text.startswith("bbb")
    assert len(transcript.body()) <= 400
    assert transcript.omitted == 1


def test_a_sliver_of_a_message_is_not_kept() -> None:
    replies = [Line("2.0", "Bob", "b" * 1000), Line("3.0", "Cy", "c" * 100)]
    transcript = bound(replies, Bounds(max_messages=50, max_chars=105 + MIN_PARTIAL_CHARS // 2), keep_first=False)

    assert [line.author for line in transcript.lines] == ["Cy"]
    assert transcript.omitted == 1


def test_without_keep_first_the_first_message_is_cut_like_any_other() -> None:
    transcript = bound(lines(5), Bounds(max_messages=2, max_chars=10_000), keep_first=False)

    assert [line.author for line in transcript.lines] == ["P3", "P4"]
    assert transcript.omitted == 4


def test_nothing_to_bound() -> None:
    assert bound([], Bounds(5, 100), keep_first=True).lines == ()


def test_mentions_channels_and_links_become_readable_and_each_name_is_asked_once() -> None:
    asked: list[str] = []

    def lookup(user_id: str) -> str | None:
        asked.append(user_id)
        return {"U0ANN": "Ann"}.get(user_id)

    names = Names(lookup)
    text = plain_text("<@U0ANN> and <@U0ANN|ann> ask <@U0GONE>: see <#C0SALES|sales>, "
                      "<https://x.example/a|the doc> &amp; <https://y.example> &lt;3", names)

    assert text == "@Ann and @Ann ask @U0GONE: see #sales, the doc & https://y.example <3"
    assert asked == ["U0ANN", "U0GONE"]
