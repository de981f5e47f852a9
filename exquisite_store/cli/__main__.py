"""``python -m exquisite_store.cli``: the same as the ``exq`` command."""

from exquisite_store.cli import main

main()
