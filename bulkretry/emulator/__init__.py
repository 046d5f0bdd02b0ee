"""A loopback stand-in for Adobe Flow Service and IMS, with faults on demand.

It lets tests, the demo and benchmarks exercise the real HTTP path without an Adobe
account, and counts what a real service could not tell us: how often each run was
re-triggered.
"""

from __future__ import annotations

from bulkretry.emulator.app import Emulator
from bulkretry.emulator.faults import Faults
from bulkretry.emulator.model import RecordedRequest, Run, Stats
from bulkretry.emulator.server import Server, serve, serve_in_thread

__all__ = [
    "Emulator",
    "Faults",
    "RecordedRequest",
    "Run",
    "Server",
    "Stats",
    "serve",
    "serve_in_thread",
]
