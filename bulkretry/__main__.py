"""``python -m bulkretry``."""

from .cli import main

main()
