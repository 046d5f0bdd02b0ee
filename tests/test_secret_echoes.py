"""Servers that echo secrets partly: a prefix cut at an excerpt, a URL-encoded form body."""

from urllib.parse import quote_plus

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bulkretry._text import FRAGMENT, _forms, _mask, scrub
from bulkretry.emulator import Emulator, Faults

from .conftest import API_KEY, ORG, TOKEN, cli_env, run_cli

ODD_SECRET = "Zx+9/Qw=Er7+Ty8/Ui0%Op"
"""A client secret with the characters a URL-encoded form changes."""


def pieces(secret):
    """Every run of FRAGMENT characters of the secret, plain and URL-encoded."""
    forms = {secret, quote_plus(secret)}
    return {form[i : i + FRAGMENT] for form in forms for i in range(len(form) - FRAGMENT + 1)}


def assert_no_piece_of(secret, *texts):
    """No text holds FRAGMENT characters in a row of the secret, in either form."""
    for text in texts:
        leaked = sorted(piece for piece in pieces(secret) if piece in text)
        assert not leaked, f"secret pieces leaked: {leaked}"


def test_scrub_masks_whole_encoded_and_partial_echoes():
    """Whole, URL-encoded and 8-character partial echoes are all masked; short text is left."""
    text = f"a {ODD_SECRET} b {quote_plus(ODD_SECRET)} c {ODD_SECRET[:9]}... d Zx+9 e"
    masked = scrub(text, [ODD_SECRET])
    assert masked == "a [REDACTED] b [REDACTED] c [REDACTED]... d Zx+9 e"


def test_scrub_masks_a_url_encoded_echo_in_lower_case_hex():
    """A server that re-encodes the secret with %2f rather than %2F is masked all the same."""
    encoded = quote_plus(ODD_SECRET).replace("%2F", "%2f").replace("%2B", "%2b")
    assert encoded != quote_plus(ODD_SECRET)
    assert scrub(f"echo {encoded} end", [ODD_SECRET]) == "echo [REDACTED] end"


@given(
    secret=st.text(min_size=1, max_size=40),
    before=st.text(max_size=12),
    after=st.text(max_size=12),
    start=st.integers(0, 40),
    length=st.integers(0, 40),
)
def test_the_quick_check_never_clears_text_the_full_scan_would_mask(
    secret, before, after, start, length
):
    """Text holding any slice of a secret gets exactly what the full scan gives it."""
    text = before + secret[start : start + length] + after
    secrets = (secret, "another-secret")
    assert scrub(text, secrets) == _mask(text, _forms(secrets))


def test_a_token_echoed_in_a_2xx_body_never_shows_even_in_part(emulator, thread_server, tmp_path):
    """A 200 HTML answer quoting the token where the 80-character excerpt ends: masked first."""
    emulator.faults = Faults(script={"echo-1": ["echo_after"]})
    journal = tmp_path / "echo.journal"
    result = run_cli(
        ["retry", "--rate", "0", "--journal", str(journal)],
        env=cli_env(thread_server),
        stdin=b"echo-1\n",
    )
    assert result.code == 1, result.stderr
    [line] = result.events("uncertain")
    assert "upstream ok" in line["error"]
    assert_no_piece_of(TOKEN, result.stdout.decode(), result.stderr, journal.read_text())


@pytest.fixture
def emulator():
    """An emulator whose OAuth client has a secret that URL-encoding changes."""
    return Emulator(
        org_id=ORG,
        api_key=API_KEY,
        static_tokens=frozenset({TOKEN}),
        clients={API_KEY: ODD_SECRET},
        auto_create=True,
    )


def test_an_ims_answer_echoing_the_form_and_part_of_the_secret_is_masked(emulator, thread_server):
    """IMS quoting the URL-encoded form and the secret's first 12 characters: exit 2, masked."""
    emulator.faults = Faults(ims_script=["echo_secret"])
    env = cli_env(thread_server, AEP_CLIENT_ID=API_KEY, AEP_CLIENT_SECRET=ODD_SECRET)
    result = run_cli(["retry"], env=env, stdin=b"r-1\n")
    assert result.code == 2, result.stderr
    assert "cannot parse" in result.stderr
    assert_no_piece_of(ODD_SECRET, result.stdout.decode(), result.stderr)
    assert emulator.stats.requests == []


@pytest.mark.parametrize("fault", ["echo_id", "bad_id"])
def test_a_2xx_whose_id_is_the_token_or_no_run_id_is_uncertain(
    fault, emulator, thread_server, tmp_path
):
    """A 2xx id echoing the token, or breaking the run-ID rule: uncertain, the token nowhere."""
    emulator.faults = Faults(script={"odd-1": [fault]})
    journal, history = tmp_path / "odd.journal", tmp_path / "history.sqlite3"
    args = ["retry", "--rate", "0", "--journal", str(journal), "--history", str(history)]
    result = run_cli(args, env=cli_env(thread_server), stdin=b"odd-1\n")
    assert result.code == 1, result.stderr
    assert not result.events("retriggered")
    [line] = result.events("uncertain")
    assert line["status"] == 200
    words = "echoes a credential" if fault == "echo_id" else "is not a valid run ID"
    assert words in line["error"]
    stored = history.read_bytes().decode("latin-1")
    assert_no_piece_of(TOKEN, result.stdout.decode(), result.stderr, journal.read_text(), stored)


def test_an_etag_echoing_the_token_is_masked_everywhere(emulator, thread_server, tmp_path):
    """A 2xx with a good id and the token as its etag: retriggered, the etag masked everywhere."""
    emulator.faults = Faults(script={"tag-1": ["echo_etag"]})
    journal, history = tmp_path / "tag.journal", tmp_path / "history.sqlite3"
    args = ["retry", "--rate", "0", "--journal", str(journal), "--history", str(history)]
    result = run_cli(args, env=cli_env(thread_server), stdin=b"tag-1\n")
    assert result.code == 0, result.stderr
    [line] = result.events("retriggered")
    assert line["etag"] == '"[REDACTED]"'
    stored = history.read_bytes().decode("latin-1")
    assert_no_piece_of(TOKEN, result.stdout.decode(), result.stderr, journal.read_text(), stored)
    again = run_cli(args, env=cli_env(thread_server), stdin=b"tag-1\n")
    [skipped] = again.events("skipped")
    assert (skipped["reason"], skipped["etag"]) == ("already-retriggered", '"[REDACTED]"')
