import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bulkretry._errors import UsageError
from bulkretry._outcomes import Skipped
from bulkretry._sources import MAX_LINE, InputFiles, LineSplitter, Overlong, parse_line
from bulkretry._text import excerpt

pytestmark = pytest.mark.anyio


class _AnyDetail:
    """Equal to any non-empty explanation."""

    def __eq__(self, other):
        return isinstance(other, str) and bool(other)

    __hash__ = None


ANY_DETAIL = _AnyDetail()
RUN_ID_ALPHABET = string.ascii_letters + string.digits + "-_"
run_ids = st.text(RUN_ID_ALPHABET, min_size=1, max_size=128)


@given(run_ids)
def test_valid_ids_pass_through_with_surrounding_whitespace(run_id):
    """A valid run ID comes back unchanged, whatever whitespace surrounds it."""
    assert parse_line(f"  {run_id}\t\r".encode()) == run_id


@given(st.binary(max_size=300))
def test_any_bytes_give_an_id_a_skip_or_nothing_never_an_exception(raw):
    """No input line can make the parser raise."""
    result = parse_line(raw)
    assert result is None or isinstance(result, str | Skipped)
    if isinstance(result, str):
        assert all(c in RUN_ID_ALPHABET for c in result) and 1 <= len(result) <= 128


@given(st.text(max_size=300), st.integers(1, 100))
def test_excerpts_are_bounded_and_printable(text, limit):
    """An excerpt of untrusted text is bounded, printable, and the text itself when it can be."""
    shown = excerpt(text, limit)
    assert shown.isascii() and shown.isprintable()
    assert len(shown) <= limit * 10 + 3
    if text.isascii() and text.isprintable() and len(text) <= limit:
        assert shown == text


def test_invalid_lines_are_shown_whole_so_they_can_be_found():
    """A 129-character ID comes back whole, non-ASCII escaped; a BOM is not part of an ID."""
    long_id = "B" * 129
    assert parse_line(long_id.encode()) == Skipped(
        run_id=long_id, reason="invalid", detail=ANY_DETAIL
    )
    assert parse_line("café".encode()).run_id == "caf\\xe9"
    assert parse_line(b"\xef\xbb\xbfok-bom") == "ok-bom"
    assert parse_line(b"esc\x1b[31m").run_id == "esc\\x1b[31m"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"", None),
        (b"   ", None),
        (b"# a comment", None),
        (b'{"run_id": "abc-1"}', "abc-1"),
        (b'{"id": "abc_2", "status": "failed"}', "abc_2"),
        (b'{"run_id": "x", "id": "y"}', "x"),
    ],
)
def test_plain_json_blank_and_comment_lines(line, expected):
    """Blank and comment lines vanish; JSON lines give their run_id (or id)."""
    assert parse_line(line) == expected


@pytest.mark.parametrize(
    "line",
    [
        b"../etc/passwd",
        b"abc?op=delete",
        b"abc#frag",
        b"abc%2F",
        b"a b",
        b"a" * 129,
        b"\xff\xfe",
        b"abc\x00def",
        b'{"run_id": 5}',
        b'{"other": "x"}',
        b"{not json",
        b'["abc"]',
        b'{"run_id": "../x"}',
    ],
)
def test_unsafe_lines_are_skipped_as_invalid_with_a_safe_excerpt(line):
    """Path tricks, query characters, bad UTF-8, NULs and bad JSON never become a run ID."""
    result = parse_line(line)
    assert isinstance(result, Skipped)
    assert result.reason == "invalid"
    assert result.detail
    assert result.run_id.isascii() and result.run_id.isprintable()


@given(st.lists(st.binary(max_size=50).filter(lambda b: b"\n" not in b), max_size=20), st.data())
def test_splitting_does_not_depend_on_chunk_boundaries(lines, data):
    """Lines come out the same however the stream is cut into chunks."""
    stream = b"".join(line + b"\n" for line in lines)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    splitter = LineSplitter()
    out = [line for chunk in chunks for line in splitter.feed(chunk)]
    out += list(splitter.close())
    assert out == lines


def test_overlong_line_is_cut_without_buffering_it_all():
    """A 10 MB line becomes one Overlong marker, and the next line still parses."""
    splitter = LineSplitter()
    out = []
    for _ in range(160):
        out += splitter.feed(b"x" * 65536)
    out += splitter.feed(b"\nnext-id\n")
    assert len(splitter._buffer) <= MAX_LINE  # noqa: SLF001 - the memory bound is the point
    assert isinstance(out[0], Overlong)
    assert out[1:] == [b"next-id"]


def test_last_line_without_newline_is_kept():
    """Input that does not end in a newline loses nothing."""
    splitter = LineSplitter()
    assert list(splitter.feed(b"a\nb")) == [b"a"]
    assert list(splitter.close()) == [b"b"]


async def test_files_stream_in_order(tmp_path):
    """Several files are read in order, comments dropped, bad lines reported."""
    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    first.write_bytes(b"# header\nrun-1\nrun-2\n")
    second.write_bytes(b"bad id\n" + b"z" * (MAX_LINE + 5) + b"\nrun-3")
    with InputFiles([str(first), str(second)]) as inputs:
        items = [item async for item in inputs.items()]
    assert items[:2] == ["run-1", "run-2"]
    assert isinstance(items[2], Skipped) and items[2].reason == "invalid"
    assert isinstance(items[3], Skipped) and "longer than" in (items[3].detail or "")
    assert items[4] == "run-3"


def test_unreadable_files_fail_before_anything_is_read(tmp_path):
    """A missing file or a directory is a usage error naming the path."""
    with (
        pytest.raises(UsageError, match=r"missing\.txt"),
        InputFiles([str(tmp_path / "missing.txt")]),
    ):
        pass
    with pytest.raises(UsageError, match="directory"), InputFiles([str(tmp_path)]):
        pass
