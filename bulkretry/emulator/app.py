"""The emulator's state and configuration, and the aiohttp application serving it."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import orjson
from aiohttp import web

from bulkretry.emulator.faults import FaultPlan, Faults
from bulkretry.emulator.flowservice import BASE_PATH, RETRIGGER_OPS, make_flow_service
from bulkretry.emulator.ims import TokenStore, make_token_handler
from bulkretry.emulator.lifecycle import Finishing, Lifecycle
from bulkretry.emulator.model import Run, Stats

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

DEFAULT_ORG = "TESTORG@AdobeOrg"
DEFAULT_API_KEY = "test-client-id"
DEFAULT_SECRET = "test-client-secret"  # noqa: S105 - a fixture credential for loopback tests
DEFAULT_TOKEN = "static-token"  # noqa: S105 - same
AUTO_FLOW_ID = "auto-created-flow"


class Emulator:
    """Adobe Flow Service and IMS in one process, for tests, the demo and benchmarks.

    Mutable state is touched only from the serving event loop; read ``stats`` after the
    job under test has ended. ``faults`` may be replaced at any time; a new value restarts
    its scripts. ``lifecycle`` says how long a re-triggered run takes and how it ends.
    ``ops`` are the re-trigger spellings accepted (the tutorial's ``re-trigger``, the OpenAPI
    file's ``RE_TRIGGER``; others get FLOW-1401-400); ``retrigger_answer`` is the tutorial's
    ``{id, etag}`` or the OpenAPI file's whole run (``FlowRunItemDTO``, with ``eTag``);
    ``run_answer`` is ``GET /runs/{id}``'s: ``{"items": [run]}`` or the run itself.
    """

    def __init__(  # noqa: PLR0913 - mirrors the knobs of the real service, all keyword-only
        self,
        *,
        org_id: str = DEFAULT_ORG,
        api_key: str = DEFAULT_API_KEY,
        sandbox: str = "prod",
        static_tokens: frozenset[str] = frozenset({DEFAULT_TOKEN}),
        clients: Mapping[str, str] | None = None,
        token_lifetime: float = 86400.0,
        faults: Faults | None = None,
        auto_create: bool = False,
        seed: int = 0,
        lifecycle: Lifecycle | None = None,
        ops: frozenset[str] = RETRIGGER_OPS,
        retrigger_answer: Literal["tutorial", "spec"] = "tutorial",
        run_answer: Literal["items", "run"] = "items",
    ) -> None:
        unknown = ops - RETRIGGER_OPS
        if not ops or unknown:
            raise ValueError(f"ops must be a non-empty subset of {sorted(RETRIGGER_OPS)}")
        self.org_id = org_id
        self.ops = ops
        self.retrigger_answer = retrigger_answer
        self.run_answer = run_answer
        self.api_key = api_key
        self.sandbox = sandbox
        self.auto_create = auto_create
        self.tokens = TokenStore(
            static_tokens,
            {DEFAULT_API_KEY: DEFAULT_SECRET} if clients is None else clients,
            token_lifetime,
        )
        self.stats = Stats()
        self.lifecycle = Lifecycle() if lifecycle is None else lifecycle
        self._runs: dict[str, Run] = {}
        self._finishing = Finishing()
        self.plan = FaultPlan(seed)
        self._faults = Faults() if faults is None else faults
        self._hangs: set[asyncio.Future[None]] = set()

    def __repr__(self) -> str:
        return f"Emulator(org_id={self.org_id!r}, runs={len(self._runs)}, faults={self._faults!r})"

    @property
    def runs(self) -> dict[str, Run]:
        """Every run by ID, as the API would answer now: re-runs whose time came are finished."""
        self._finishing.settle(self._runs)
        return self._runs

    @property
    def faults(self) -> Faults:
        """The misbehaviour in force; assign a new ``Faults`` to change it mid-test."""
        return self._faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        self._faults = faults
        self.plan.restart_scripts()

    def add_run(self, run: Run) -> None:
        """Add or replace a run by ID."""
        self._runs[run.id] = run

    def load_runs(self, source: str | os.PathLike[str] | Iterable[Mapping[str, Any]]) -> None:
        """Add runs from a JSON file or a list of dicts named like ``Run``'s fields."""
        items: Iterable[Mapping[str, Any]]
        if isinstance(source, str | os.PathLike):
            items = orjson.loads(Path(source).read_bytes())
        else:
            items = source
        for item in items:
            self.add_run(Run.from_dict(item))

    def lookup(self, run_id: str) -> Run | None:
        """Find a run; with ``auto_create`` an unknown ID becomes a failed run."""
        run = self.runs.get(run_id)
        if run is None and self.auto_create:
            run = Run(id=run_id, flow_id=AUTO_FLOW_ID, input_records=1, failed_records=1)
            self.add_run(run)
        return run

    def retrigger(self, run: Run) -> Run:
        """Apply a re-trigger: a new in-progress run, due to end as ``lifecycle`` says."""
        new_run = run.retriggered()
        self.add_run(new_run)
        self._finishing.schedule(self.lifecycle, run, new_run)
        self.stats.retriggers[run.id] += 1
        return new_run

    async def hang(self, seconds: float) -> None:
        """Sleep like a stuck upstream, but wake when the server stops (see ``wake``)."""
        waiter = asyncio.get_running_loop().create_future()
        self._hangs.add(waiter)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter, seconds)
        finally:
            self._hangs.discard(waiter)

    def wake(self) -> None:
        """End every hang so shutdown neither waits an hour nor leaves tasks pending."""
        for waiter in self._hangs:
            if not waiter.done():
                waiter.set_result(None)

    def make_app(self) -> web.Application:
        """One application serving Flow Service under its base path and IMS beside it."""
        app = web.Application()
        app.add_subapp(BASE_PATH, make_flow_service(self))
        app.add_routes([make_token_handler(self)])
        return app
