import contextlib
import gc
import random
import weakref
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bulkretry._attempts import Attempts, Decision, Failure, GaveUp, Policy, classify
from bulkretry._backoff import Backoff, parse_retry_after
from bulkretry._errors import (
    APIError,
    BulkRetryError,
    ConnectError,
    ConnectionLostError,
    UsageError,
)


@pytest.mark.parametrize(
    ("error", "refreshable", "decision"),
    [
        (ConnectError("refused"), False, Decision.RETRY),
        (ConnectionLostError("dropped"), False, Decision.UNCERTAIN),
        (APIError(429, "429050", "Too many requests"), False, Decision.RETRY),
        (APIError(503, None, "unavailable"), False, Decision.RETRY),
        (APIError(500, None, "boom"), False, Decision.UNCERTAIN),
        (APIError(502, None, "bad gateway"), False, Decision.UNCERTAIN),
        (APIError(504, None, "gateway timeout"), False, Decision.UNCERTAIN),
        (APIError(200, None, "not JSON"), False, Decision.UNCERTAIN),
        (APIError(401, "401013", "bad token"), True, Decision.RESEND),
        (APIError(401, "401013", "bad token"), False, Decision.REFUSED),
        (APIError(403, "403025", "Profile is not valid"), True, Decision.REFUSED),
        (APIError(404, None, "no such run"), False, Decision.REFUSED),
        (APIError(302, None, "redirect"), False, Decision.REFUSED),
        (UsageError("not an HTTP error"), False, Decision.REFUSED),
    ],
)
def test_contract_classification_table(error, refreshable, decision):
    """Each answer is classed exactly as the contract's table says."""
    assert classify(error, refreshable=refreshable) is decision


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


def scripted(*answers: BulkRetryError | str) -> Callable[[], Awaitable[str]]:
    """A request that raises or returns the next answer of a script, in order."""
    script = list(answers)

    async def request() -> str:
        answer = script.pop(0)
        if isinstance(answer, BulkRetryError):
            raise answer
        return answer

    return request


async def judged(policy: Policy, *answers: BulkRetryError | str) -> list[Failure]:
    """Run a scripted request through the loop; the failures it judged, in order."""
    failures: list[Failure] = []
    with contextlib.suppress(GaveUp):
        await Attempts(policy, on_failure=failures.append).run(scripted(*answers))
    return failures


def steps(failures: list[Failure]) -> list[tuple[Decision, float]]:
    """What followed each failed attempt, and the wait before the next."""
    return [(failure.decision, failure.wait) for failure in failures]


@pytest.mark.anyio
async def test_attempts_follow_the_table_and_the_limit():
    """Safe errors go again until the limit; uncertain and refused ones stop at once."""
    busy = APIError(503, None, "busy", retry_after=0.01)
    three = Policy(limit=3, backoff=Backoff(base=0))
    assert steps(await judged(three, busy, busy, busy)) == [
        (Decision.RETRY, 0.01),
        (Decision.RETRY, 0.01),
        (Decision.EXHAUSTED, 0.0),
    ]
    assert steps(await judged(three, ConnectionLostError("x"))) == [(Decision.UNCERTAIN, 0.0)]
    assert steps(await judged(three, APIError(404, None, "no"))) == [(Decision.REFUSED, 0.0)]


@pytest.mark.anyio
async def test_a_401_with_oauth_goes_again_once_within_the_limit():
    """A renewed token earns one more send at once; a second 401, or no attempt left, is final."""
    expired = APIError(401, "401013", "expired")
    refreshable = Policy(limit=3, refreshable=True)
    assert steps(await judged(refreshable, expired, expired)) == [
        (Decision.RESEND, 0.0),
        (Decision.REFUSED, 0.0),
    ]
    last = Policy(limit=1, refreshable=True)
    assert steps(await judged(last, expired)) == [(Decision.REFUSED, 0.0)]


@pytest.mark.anyio
async def test_retry_uncertain_and_overlong_retry_after():
    """--retry-uncertain resends a 500; a Retry-After over the limit ends the retries."""
    uncertain = Policy(limit=3, retry_uncertain=True, backoff=Backoff(base=0))
    failures = await judged(uncertain, APIError(500, None, "boom"), "new-run")
    assert steps(failures) == [(Decision.RETRY, 0.0)]
    assert failures[0].maybe_applied
    slow = APIError(429, None, "slow", retry_after=3600.0)
    [throttled] = await judged(Policy(limit=3), slow)
    assert throttled.decision is Decision.EXHAUSTED
    assert throttled.describe() == "slow (asked to wait 3600s, over the 300s limit)"


@pytest.mark.anyio
async def test_the_loop_returns_the_value_and_counts_attempts():
    """A success after safe failures is returned, with every attempt counted."""
    request = scripted(ConnectError("refused"), APIError(503, None, "busy"), "value")
    attempts = Attempts(Policy(limit=5, backoff=Backoff(base=0)))
    assert await attempts.run(request) == "value"
    assert attempts.made == 3


@pytest.mark.anyio
async def test_a_failed_answer_is_freed_without_the_cycle_collector():
    """A refused attempt's frames (its answer body) go when the run ends, not at a collection."""
    bodies: list[weakref.ref[object]] = []

    class Body:
        """Stands in for a large answer body held by the request's frame."""

    async def request() -> str:
        body = Body()
        bodies.append(weakref.ref(body))
        raise APIError(502, None, "bad gateway")

    gc.disable()
    try:
        with contextlib.suppress(GaveUp):
            await Attempts(Policy(limit=1)).run(request)
        assert bodies
        assert bodies[0]() is None
    finally:
        gc.enable()
