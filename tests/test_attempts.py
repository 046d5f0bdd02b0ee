import random
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bulkretry._attempts import Attempts, Backoff, Step, Verdict, classify, parse_retry_after
from bulkretry._errors import APIError, ConnectError, ConnectionLostError, UsageError


@pytest.mark.parametrize(
    ("error", "refreshable", "verdict"),
    [
        (ConnectError("refused"), False, Verdict.RETRY),
        (ConnectionLostError("dropped"), False, Verdict.UNCERTAIN),
        (APIError(429, "429050", "Too many requests"), False, Verdict.RETRY),
        (APIError(503, None, "unavailable"), False, Verdict.RETRY),
        (APIError(500, None, "boom"), False, Verdict.UNCERTAIN),
        (APIError(502, None, "bad gateway"), False, Verdict.UNCERTAIN),
        (APIError(504, None, "gateway timeout"), False, Verdict.UNCERTAIN),
        (APIError(200, None, "not JSON"), False, Verdict.UNCERTAIN),
        (APIError(401, "401013", "bad token"), True, Verdict.REAUTH),
        (APIError(401, "401013", "bad token"), False, Verdict.FAILED),
        (APIError(403, "403025", "Profile is not valid"), True, Verdict.FAILED),
        (APIError(404, None, "no such run"), False, Verdict.FAILED),
        (APIError(302, None, "redirect"), False, Verdict.FAILED),
        (UsageError("not an HTTP error"), False, Verdict.FAILED),
    ],
)
def test_contract_classification_table(error, refreshable, verdict):
    """Each answer is classed exactly as the contract's table says."""
    assert classify(error, refreshable=refreshable) is verdict


def test_retry_after_in_seconds_and_as_a_date():
    """Retry-After is read as delta-seconds or as an HTTP date; junk is ignored."""
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-3") is None
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    when = datetime(2030, 1, 1, 0, 0, 10, tzinfo=UTC)
    now = datetime(2030, 1, 1, tzinfo=UTC).timestamp()
    assert parse_retry_after(format_datetime(when, usegmt=True), now=now) == pytest.approx(10.0)
    assert parse_retry_after(format_datetime(when, usegmt=True), now=now + 60) == 0.0


@given(
    attempt=st.integers(1, 30),
    retry_after=st.none() | st.floats(0, 600),
    base=st.floats(0, 5),
    seed=st.integers(),
)
def test_backoff_is_bounded_and_never_sooner_than_retry_after(attempt, retry_after, base, seed):
    """Full jitter stays within [0, min(cap, base*2^(n-1))], floored by Retry-After."""
    backoff = Backoff(base=base, cap=30.0, rng=random.Random(seed))
    delay = backoff.delay(attempt, retry_after)
    assert delay >= (retry_after or 0.0)
    assert delay <= max(min(30.0, base * 2 ** (attempt - 1)), retry_after or 0.0)


def test_zero_base_means_zero_waits():
    """Tests zero the waits through the policy's parameter, not by patching sleep."""
    assert Backoff(base=0).delay(3) == 0.0
    assert Backoff(base=0).delay(3, retry_after=2.0) == 2.0


def test_attempts_follow_the_table_and_the_limit():
    """Safe errors go again until the limit; uncertain and refused ones stop at once."""
    attempts = Attempts(limit=3, refreshable=False)
    steps = []
    for _ in range(3):
        attempts.made += 1
        steps.append(attempts.after(APIError(503, None, "busy", retry_after=2.0))[1:])
    assert steps == [(Step.AGAIN_LATER, 2.0), (Step.AGAIN_LATER, 2.0), (Step.STOP, 0.0)]
    assert Attempts(3, refreshable=False, made=1).after(ConnectionLostError("x"))[1] is Step.STOP
    assert Attempts(3, refreshable=False, made=1).after(APIError(404, None, "no"))[1] is Step.STOP


def test_a_401_with_oauth_goes_again_once_within_the_limit():
    """A renewed token earns one more send at once; a second 401, or no attempt left, is final."""
    attempts = Attempts(limit=3, refreshable=True, made=1)
    assert attempts.after(APIError(401, "401013", "expired")) == (
        Verdict.REAUTH,
        Step.AGAIN_NOW,
        0.0,
    )
    attempts.made += 1
    assert attempts.after(APIError(401, "401013", "expired"))[:2] == (Verdict.FAILED, Step.STOP)
    last = Attempts(limit=1, refreshable=True, made=1)
    assert last.after(APIError(401, "401013", "expired"))[:2] == (Verdict.FAILED, Step.STOP)


def test_retry_uncertain_and_overlong_retry_after():
    """--retry-uncertain resends a 500; a Retry-After over the limit ends the retries."""
    uncertain = Attempts(3, refreshable=False, retry_uncertain=True, made=1)
    assert uncertain.after(APIError(500, None, "boom"))[1] is Step.AGAIN_LATER
    throttled = Attempts(3, refreshable=False, made=1)
    assert throttled.after(APIError(429, None, "slow", retry_after=3600.0))[1] is Step.STOP
