"""`bulkretry failed --error-code / --exclude-error-code`: keep what a nightly job may retry."""

from datetime import UTC, datetime

import pytest

import bulkretry
from bulkretry._backoff import Backoff
from bulkretry._discovery import ListingSettings
from bulkretry.emulator import Run

from .conftest import cli_env, run_cli

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 11, 22, 2, tzinfo=UTC)
CODES = {
    "timeout": "CONNECTOR-1001-500",
    "denied": "CONNECTOR-2001-500",
    "mapping": "MAPPER-2101-400",
    "internal": "FLOW-1012-500",
}


def seed(emulator):
    """One failed run per error code, one failed run with no error, one with two errors."""
    for name, code in CODES.items():
        emulator.add_run(
            Run(id=name, flow_id="flow", created_at=T0, errors=((code, f"{name} happened"),))
        )
    emulator.add_run(Run(id="silent", flow_id="flow", created_at=T0))
    two = (("MAPPER-2101-400", "bad field"), ("CONNECTOR-1001-500", "and a timeout"))
    emulator.add_run(Run(id="mapping-first", flow_id="flow", created_at=T0, errors=two))
    emulator.auto_create = False


async def listed(api_settings, **kwargs):
    """Run IDs the public API lists with these filters."""
    settings = ListingSettings(flow_ids=("flow",), rate=0, **kwargs)
    async with bulkretry.list_failed(api_settings, settings, backoff=Backoff(base=0)) as lister:
        return {record.run_id async for record in lister.records()}


async def test_error_code_keeps_matching_runs_only(emulator, api_settings):
    """--error-code keeps runs whose first code matches a pattern; runs with no code drop out."""
    seed(emulator)
    assert await listed(api_settings, error_codes=("CONNECTOR-*",)) == {"timeout", "denied"}
    both = ("CONNECTOR-1001-*", "FLOW-*")
    assert await listed(api_settings, error_codes=both) == {"timeout", "internal"}


async def test_exclude_error_code_drops_matching_runs(emulator, api_settings):
    """--exclude-error-code drops matches and keeps runs without a code; it wins over a keep."""
    seed(emulator)
    everything = {*CODES, "silent", "mapping-first"}
    assert await listed(api_settings, exclude_error_codes=("MAPPER-*",)) == everything - {
        "mapping",
        "mapping-first",
    }
    kept = await listed(
        api_settings, error_codes=("CONNECTOR-*",), exclude_error_codes=("*-2001-*",)
    )
    assert kept == {"timeout"}


def test_settings_match_codes_in_any_case():
    """Patterns are shell-style and case-blind; only the first error code counts."""
    settings = ListingSettings(flow_ids=("f",), error_codes=("connector-100?-*",))
    assert settings.keeps("CONNECTOR-1001-500")
    assert not settings.keeps("CONNECTOR-2001-500")
    assert not settings.keeps(None)
    assert ListingSettings(flow_ids=("f",)).keeps(None)


def test_cli_error_code_flags(emulator, thread_server):
    """The CLI flags are repeatable and reach the listing; the lines are the usual records."""
    seed(emulator)
    result = run_cli(
        [
            "failed",
            "--flow-id",
            "flow",
            "--rate",
            "0",
            "--error-code",
            "connector-*",
            "--error-code",
            "MAPPER-*",
            "--exclude-error-code",
            "CONNECTOR-2001-500",
        ],
        env=cli_env(thread_server),
    )
    assert result.code == 0, result.stderr
    assert {line["run_id"] for line in result.lines} == {"timeout", "mapping", "mapping-first"}
    timeout = next(line for line in result.lines if line["run_id"] == "timeout")
    assert timeout["error"] == "CONNECTOR-1001-500: timeout happened"
