"""The ``mlci`` command: the same tasks as ``invoke`` in the project root."""

from __future__ import annotations


def main() -> None:
    from invoke import Program

    from mlci import __version__
    from mlci.tasks import namespace

    Program(name="mlci", binary="mlci", namespace=namespace, version=__version__).run()
