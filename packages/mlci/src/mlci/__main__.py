"""``python -m mlci``: the ``mlci`` command."""

from mlci.cli import main

main()
