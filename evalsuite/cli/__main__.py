"""``python -m evalsuite.cli``: the same as the ``evalsuite`` command."""

from evalsuite.cli import main

main()
