from __future__ import annotations

import datetime as dt
from urllib.parse import parse_qsl, urlsplit

from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import MultiDict

from bulkretry.emulator import Run
from bulkretry.emulator.listing import page

from .support import T0

runs_strategy = st.lists(
    st.builds(
        Run,
        id=st.text("abcdef", min_size=1, max_size=4),
        flow_id=st.sampled_from(["f1", "f2", "f3"]),
        status=st.sampled_from(["failed", "success", "FAILED"]),
        created_at=st.integers(0, 5).map(lambda m: T0 + dt.timedelta(minutes=m)),
    ),
    unique_by=lambda run: run.id,
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(
    runs=runs_strategy,
    limit=st.integers(1, 8),
    descending=st.booleans(),
    flows=st.sets(st.sampled_from(["f1", "f2", "f3"]), min_size=1),
    since_minute=st.integers(0, 6),
)
def test_pages_partition_the_filtered_listing(runs, limit, descending, flows, since_minute):
    """Following next links yields every matching run once, in order, whatever the ties."""
    since = int((T0 + dt.timedelta(minutes=since_minute)).timestamp() * 1000)
    query = MultiDict(
        [
            ("property", ",".join(f"flowId=={flow}" for flow in sorted(flows))),
            ("property", f"createdAt>={since}"),
            ("limit", str(limit)),
            ("orderby", "-createdAt" if descending else "createdAt"),
        ]
    )
    served = []
    for _ in range(len(runs) + 2):
        current = page(runs, query)
        assert len(current.items) <= limit
        served += current.items
        if current.next_href is None:
            break
        assert current.items
        query = MultiDict(parse_qsl(urlsplit(current.next_href).query))
    expected = sorted(
        (run for run in runs if run.flow_id in flows and run.created_ms >= since),
        key=lambda run: (run.created_ms, run.id),
        reverse=descending,
    )
    assert served == expected
