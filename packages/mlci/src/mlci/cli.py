"""The ``mlci`` command: the same tasks as ``invoke`` in the project root.

Invoke's parser says "No idea what 'trian' is!" and stops there; the ``mlci`` program adds
the task or flag that was probably meant, and how to list them all. Its one flag of its own,
``mlci --verbose TASK``, shows the full traceback before a task's error message (the same as
``MLCI_VERBOSE=1``, which plain ``invoke`` honours too).
"""

from __future__ import annotations

import difflib
import os
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from invoke.program import Program

UNKNOWN_TASK = re.compile(r"No idea what '(?P<name>[^']+)' is!")
UNKNOWN_FLAG = re.compile(r"No idea what '(?P<name>-[^']+)' is!")
NEEDS_VALUE = re.compile(r"Flag <Argument: (?P<name>\w+)[^>]*> needed value")


def hint(message: str, tasks: list[str], flags: list[str]) -> str:
    """The parser's message with a "did you mean" for an unknown task or flag."""
    missing = NEEDS_VALUE.search(message)
    if missing is not None:
        flag = "--" + missing.group("name").replace("_", "-")
        return f"the flag {flag} needs a value, e.g. {flag}=VALUE (mlci <task> --help)"
    match = UNKNOWN_TASK.search(message)
    if match is None:
        return message
    name = match.group("name")
    choices = flags if UNKNOWN_FLAG.search(message) else tasks
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    what = "flag" if name.startswith("-") else "task"
    suggestion = f"did you mean {close[0]!r}? " if close else ""
    listing = "mlci <task> --help lists a task's flags" if what == "flag" else "mlci --list"
    return f"{message}\n  {suggestion}(unknown {what}; {listing})"


VERBOSE_HELP = "show the full traceback before an error's message (or set MLCI_VERBOSE=1)"


def program() -> Program:
    from invoke.exceptions import ParseError
    from invoke.parser.argument import Argument
    from invoke.program import Program

    from mlci import __version__
    from mlci.errors import VERBOSE_ENV
    from mlci.tasks import namespace

    class MlciProgram(Program):
        def core_args(self) -> list[Argument]:
            verbose = Argument(names=("verbose",), kind=bool, default=False, help=VERBOSE_HELP)
            return [*super().core_args(), verbose]

        def parse_core(self, argv: list[str] | None) -> None:
            super().parse_core(argv)
            if self.args.verbose.value:
                # The task layer's error handler reads it (and so do mlci commands it runs).
                os.environ[VERBOSE_ENV] = "1"

        def parse_tasks(self) -> None:
            try:
                super().parse_tasks()
            except ParseError as exc:
                tasks = sorted(self.collection.task_names)
                flags = sorted(
                    f"--{arg.name.replace('_', '-')}"
                    for name in tasks
                    for arg in self.collection[name].get_arguments()
                )
                message = hint(str(exc), tasks, flags)
                raise ParseError(message, getattr(exc, "context", None)) from None

    return MlciProgram(name="mlci", binary="mlci", namespace=namespace, version=__version__)


def main() -> None:
    from mlci.servers import disable_mlflow_telemetry

    disable_mlflow_telemetry()  # before anything imports mlflow (see mlci.servers)
    program().run()
