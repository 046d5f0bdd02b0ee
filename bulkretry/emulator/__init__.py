"""A loopback stand-in for Adobe Flow Service and IMS, with faults on demand.

It lets tests, the demo and benchmarks exercise the real HTTP path without an Adobe
account, and counts what a real service could not tell us: how often each run was
re-triggered.

Notes for clients under test:

- A dropped connection is ``transport.close()`` before any byte of the answer: aiohttp
  clients raise ``ServerDisconnectedError``. aiohttp itself resends an idempotent request
  (GET) once after a disconnect, so a single scripted drop on a listing page goes unseen;
  POSTs are never resent.
- ``timeout_after`` applies the re-trigger and then holds the answer for an hour, or until
  the server stops, when the connection is dropped (and counted under 0).
- ``GET /runs`` next links are ``/runs?…`` paths, relative to ``Server.base_url``; the
  ``list_script`` faults ``self_link``, ``first_link`` and ``connections_link`` bend them.
- Both re-trigger spellings are accepted unless ``Emulator(ops=...)`` narrows them.
- ``RecordedRequest.query`` keeps each parameter's first value, ``query_all`` every pair.
- A re-trigger starts a new run (same flow, created now, ``inProgress``) that ends after
  ``Lifecycle.seconds``: ``failed`` with the original's errors when the original is marked
  ``poison`` (re-runs inherit the mark), ``success`` otherwise. ``GET /runs/{id}`` and the
  listing see it from the start.
"""

from __future__ import annotations

from bulkretry.emulator.app import Emulator
from bulkretry.emulator.faults import Faults
from bulkretry.emulator.lifecycle import Lifecycle
from bulkretry.emulator.model import RecordedRequest, Run, Stats
from bulkretry.emulator.server import Server, serve, serve_in_thread

__all__ = [
    "Emulator",
    "Faults",
    "Lifecycle",
    "RecordedRequest",
    "Run",
    "Server",
    "Stats",
    "serve",
    "serve_in_thread",
]
