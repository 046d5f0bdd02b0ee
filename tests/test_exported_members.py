import bulkretry


def test_all_lists_exactly_the_public_names():
    """The public surface is deliberate: __all__ is sorted and names every public member."""
    public = {name for name in dir(bulkretry) if not name.startswith("_")} - {
        # submodules, importable but not part of the flat API
        "admission",
        "api",
        "auth",
        "cli",
        "config",
        "dedup",
        "discovery",
        "emulator",
        "errors",
        "flowservice",
        "journal",
        "outcomes",
        "pipeline",
        "report",
        "retrying",
        "sources",
    }
    assert sorted(bulkretry.__all__) == bulkretry.__all__
    assert set(bulkretry.__all__) - {"__version__"} == public


def test_every_error_has_one_root():
    """Every exception bulkretry exports derives from BulkRetryError."""
    errors = [getattr(bulkretry, n) for n in bulkretry.__all__ if n.endswith("Error")]
    assert errors
    assert all(issubclass(e, bulkretry.BulkRetryError) for e in errors)
