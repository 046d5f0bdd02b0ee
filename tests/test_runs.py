"""Reading run objects from the API: counts that are not real counts read as 0."""

import pytest

from bulkretry._runs import run_state


def run(count: object) -> dict[str, object]:
    """A run object whose recordSummary says ``count`` records were written."""
    return {
        "id": "r1",
        "metrics": {
            "statusSummary": {"status": "success"},
            "recordSummary": {"outputRecordCount": count},
        },
    }


@pytest.mark.parametrize(
    ("count", "records"),
    [(12, 12), (2**63 - 1, 2**63 - 1), (2**63, 0), (2**64 - 1, 0), (-5, 0), ("12", 0), (True, 0)],
)
def test_a_count_is_kept_only_when_a_database_can_keep_it(count, records):
    """OutputRecordCount outside 0..2**63-1 (or not a number) is 0, never a crash later."""
    assert run_state(run(count)).records == records
