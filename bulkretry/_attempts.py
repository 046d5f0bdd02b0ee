"""The one attempt loop: admit, send, judge the answer, wait, and send again or stop.

Re-triggers, listing pages, IMS token requests and run polling all go through
``Attempts.run``, so one status policy (the contract's table), one ``Retry-After`` cap and
one place that tells admission about 429s serve them all. The shape is stamina's
``retry_context``: the caller names the request, the loop owns the retries.

Only answers that prove a request was *not* applied are retried (429, 503, failure to
connect). Everything else is final, because a second re-trigger starts a second
ingestion; a request that is safe to repeat (a token, a GET) says so with
``retry_uncertain``. How long to wait between attempts is ``_backoff``'s.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Final, Protocol, TypeVar

import anyio

from ._backoff import MAX_RETRY_AFTER, Backoff
from ._errors import APIError, AuthError, BulkRetryError, ConnectError, ConnectionLostError

T = TypeVar("T")

_SAFE_STATUSES: Final = frozenset({429, 503})


class Decision(enum.Enum):
    """What a failed attempt means and what follows it: the policy's one answer."""

    RESEND = "resend"  # a 401 whose token was dropped: send once more, at once
    RETRY = "retry"  # not applied (or safe to repeat): send again after a backoff
    REFUSED = "refused"  # final: refused (3xx, 4xx, a second 401), certainly not applied
    UNCERTAIN = "uncertain"  # final: the request may have been applied
    EXHAUSTED = "exhausted"  # final: worth retrying, but no attempt (or patience) is left

    @property
    def final(self) -> bool:
        """Whether the loop ends here."""
        return self not in {Decision.RESEND, Decision.RETRY}


def classify(error: BulkRetryError, *, refreshable: bool) -> Decision:
    """The contract's table: what one attempt's error means, before any limit applies."""
    if isinstance(error, ConnectError):
        return Decision.RETRY
    if isinstance(error, ConnectionLostError):
        return Decision.UNCERTAIN
    if isinstance(error, APIError):
        status = error.status
        if status in _SAFE_STATUSES:
            return Decision.RETRY
        if status == 401 and refreshable:
            return Decision.RESEND
        if 200 <= status < 300 or status >= 500:
            return Decision.UNCERTAIN
    return Decision.REFUSED


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    """How hard one unit of work is tried; shared by every unit of a job."""

    limit: int
    refreshable: bool = False
    retry_uncertain: bool = False  # the request is safe to repeat, or the user said so
    backoff: Backoff = field(default_factory=Backoff)


@dataclass(frozen=True, slots=True, kw_only=True)
class Failure:
    """One failed attempt, judged."""

    error: BulkRetryError
    decision: Decision
    attempts: int  # made so far, this one included
    maybe_applied: bool  # some attempt so far may have been applied: never "failed" after
    wait: float = 0.0  # before the next attempt, when the decision is RETRY

    @property
    def status(self) -> int | None:
        """The HTTP status, when there was an answer."""
        return self.error.status if isinstance(self.error, APIError) else None

    def describe(self) -> str:
        """The error's words, and why the retries ended when a Retry-After ended them."""
        text = str(self.error)
        retry_after = _retry_after(self.error)
        if self.decision is Decision.EXHAUSTED and (retry_after or 0.0) > MAX_RETRY_AFTER:
            text += f" (asked to wait {retry_after:.0f}s, over the {MAX_RETRY_AFTER:.0f}s limit)"
        return text


class GaveUp(Exception):  # noqa: N818 - says what happened, like stamina's names
    """The loop ended without a value; ``failure`` is the last attempt's (None: none sent)."""

    def __init__(self, failure: Failure | None) -> None:
        self.failure = failure
        super().__init__(failure.describe() if failure else "nothing was sent")


class NotSent(Exception):  # noqa: N818 - a signal between the request and the loop
    """Raised by a request that chose not to send (say, its intent could not be recorded)."""


class Gate(Protocol):
    """Admission as the loop sees it: wait before a request, hear how it was answered."""

    def try_start(self) -> bool:
        """Start now when nothing makes the request wait (True); else ``wait`` is due."""

    async def wait(self) -> None:
        """Return when the next request may start."""

    def answered(self, *, throttled: bool, retry_after: float | None = None) -> None:
        """An answer came; ``throttled`` when it was a 429, with its ``Retry-After`` seconds."""


class Interrupter(Protocol):
    """A job-wide stop that cuts waits short but never a request already sent."""

    @property
    def stopped(self) -> bool:
        """Whether the stop was requested."""

    def interruptible(self) -> AbstractContextManager[anyio.CancelScope]:
        """A scope that the stop cancels."""


class Attempts:
    """One unit of work's attempts: ``await Attempts(policy, ...).run(request)``.

    ``ready`` is asked before each wait for admission: False ends the loop without waiting
    (a tripped breaker); the request itself raises ``NotSent`` to end it without sending.
    ``on_failure`` hears every failed attempt, final or not, before any backoff.
    """

    def __init__(
        self,
        policy: Policy,
        *,
        gate: Gate | None = None,
        stopper: Interrupter | None = None,
        ready: Callable[[], bool] | None = None,
        on_failure: Callable[[Failure], object] | None = None,
    ) -> None:
        self._policy = policy
        self._gate = gate
        self._stopper = stopper
        self._ready = ready or _always
        self._on_failure = on_failure
        self.made = 0
        self._resent = False
        self._maybe_applied = False

    async def run(self, request: Callable[[], Awaitable[T]]) -> T:
        """The request's value; ``GaveUp`` with the last failure when there is none."""
        last: Failure | None = None
        while True:
            if not (self._ready() and await self._admit()):
                raise GaveUp(last)
            self.made += 1
            try:
                value = await request()
            except NotSent:
                self.made -= 1  # nothing left: not an attempt
                raise GaveUp(last) from None
            except BulkRetryError as error:
                # Kept for its words and status: its traceback would hold the request's
                # frames (an answer's body) in a cycle through ``last`` until a collection.
                error.__traceback__ = None
                decision = classify(
                    error, refreshable=self._policy.refreshable and not self._resent
                )
                self._tell_admission(error, decision)
                last = self._decide(error, decision)
                if self._on_failure is not None:
                    self._on_failure(last)
                if last.decision.final:
                    raise GaveUp(last) from error
                if last.decision is Decision.RETRY and not await self._sleep(last.wait):
                    raise GaveUp(last) from error
            else:
                if self._gate is not None:
                    self._gate.answered(throttled=False)
                return value

    def _decide(self, error: BulkRetryError, decision: Decision) -> Failure:
        """Apply the attempt limit, the one resend and the Retry-After cap to a classification."""
        policy = self._policy
        self._maybe_applied |= decision is Decision.UNCERTAIN
        retry_after = _retry_after(error)
        left = self.made < policy.limit
        if decision is Decision.RESEND:
            self._resent = True
            decision = Decision.RESEND if left else Decision.REFUSED
        elif decision is Decision.RETRY or (
            decision is Decision.UNCERTAIN and policy.retry_uncertain
        ):
            patient = (retry_after or 0.0) <= MAX_RETRY_AFTER
            decision = Decision.RETRY if left and patient else Decision.EXHAUSTED
        wait = policy.backoff.delay(self.made, retry_after) if decision is Decision.RETRY else 0.0
        return Failure(
            error=error,
            decision=decision,
            attempts=self.made,
            maybe_applied=self._maybe_applied,
            wait=wait,
        )

    def _tell_admission(self, error: BulkRetryError, decision: Decision) -> None:
        """The one place admission hears of failed answers: a 429 slows the job.

        A refusal or a maybe-applied answer speeds it up, like a success. Answers that say
        nothing about load leave it alone: a 503 or a failure to connect (retried), and a
        401 that only wants a new token.
        """
        if self._gate is None:
            return
        if isinstance(error, APIError) and error.status == 429:
            self._gate.answered(throttled=True, retry_after=error.retry_after)
        elif decision in {Decision.REFUSED, Decision.UNCERTAIN}:
            self._gate.answered(throttled=False)

    async def _admit(self) -> bool:
        """Wait for admission; False when the job was stopped meanwhile."""
        gate = self._gate
        if gate is not None and not gate.try_start():  # started at once: no checkpoint
            return await self._unless_stopped(gate.wait())
        return self._stopper is None or not self._stopper.stopped

    async def _sleep(self, seconds: float) -> bool:
        """Back off; False when a stop cut the wait short."""
        return await self._unless_stopped(anyio.sleep(seconds))

    async def _unless_stopped(self, wait: Awaitable[object]) -> bool:
        """Await ``wait``; False when a stop cut it short."""
        if self._stopper is None:
            await wait
            return True
        with self._stopper.interruptible() as scope:
            await wait
        return not scope.cancelled_caught


def _always() -> bool:
    return True


def _retry_after(error: BulkRetryError) -> float | None:
    return error.retry_after if isinstance(error, APIError) else None


def refuses_the_caller(error: BulkRetryError) -> bool:
    """Whether a refusal is about the caller (token, key, org), not about one run.

    A 401, a token that can no longer be had, or a gateway 403 (a six-digit code such as
    403025 "Profile is not valid") would refuse every request alike: re-triggers and polls
    stop asking after a few. A service 403 may concern one run only.
    """
    if isinstance(error, AuthError):
        return True
    if not isinstance(error, APIError):
        return False
    gateway = error.code is not None and error.code.isdigit() and len(error.code) == 6
    return error.status == 401 or (error.status == 403 and gateway)
