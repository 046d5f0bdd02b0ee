import subprocess
import sys

import orjson

import bulkretry


def test_all_lists_exactly_the_public_names():
    """The public surface is deliberate: __all__ is sorted and names every public member."""
    # A fresh interpreter: here, other tests' imports add submodules such as the emulator.
    code = "import bulkretry, json; print(json.dumps(sorted(dir(bulkretry))))"
    names = orjson.loads(subprocess.check_output([sys.executable, "-c", code]))
    public = {name for name in names if not name.startswith("_")}
    assert sorted(bulkretry.__all__) == bulkretry.__all__
    assert set(bulkretry.__all__) - {"__version__"} == public


def test_every_error_has_one_root():
    """Every exception bulkretry exports derives from BulkRetryError."""
    errors = [getattr(bulkretry, n) for n in bulkretry.__all__ if n.endswith("Error")]
    assert errors
    assert all(issubclass(e, bulkretry.BulkRetryError) for e in errors)
