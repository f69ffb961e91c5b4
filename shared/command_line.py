"""How the course's command lines end on a user's mistake: one line and a non-zero status.

Every script with a `__main__` block (benchmarks, figure drawers, `python -m shared.notebooks`)
runs its main through `run_main`, parses flags with `CommandParser`, and checks numeric flags
with `number_arg`, so that a bad path, flag or cell is named in one line, never a traceback.
"""

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from shared.data import DataFetchError


# A user's mistake, not a bug: a bad value or type, a file that is missing or cannot be read or
# written, a notebook cell that does not parse, data that could not be fetched.
USER_ERRORS = (ValueError, TypeError, OSError, SyntaxError, DataFetchError)


def run_main(main: Callable[[], int | None], prog: str | None = None) -> NoReturn:
    """Run a command line's `main()` and exit with the status it returns (None: 0).

    A user's mistake (USER_ERRORS) ends in one line, `prog: message`, on stderr and status 1;
    Ctrl-C in `prog: interrupted` and 130, the status a shell gives SIGINT. Any other exception
    is a bug, and keeps its traceback: that is what a traceback is for. `prog` defaults to the
    module run with `python -m` (shared.notebooks), else the script's file name.
    """
    if prog is None:
        spec = getattr(sys.modules["__main__"], "__spec__", None)
        prog = spec.name if spec else Path(sys.argv[0]).name
    try:
        status = main()
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        status = 130
    except USER_ERRORS as error:
        print(f"{prog}: {error_message(error)}", file=sys.stderr)
        status = 1
    sys.exit(status)


def error_message(error: BaseException) -> str:
    """The error's text; for an OS error `path: reason`, not `[Errno 2] reason: 'path'`."""
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        return f"{error.filename}: {error.strerror}"
    return str(error) or type(error).__name__


class CommandParser(argparse.ArgumentParser):
    """argparse, with a usage error in one line and status 2 (not the usage, then the error):
    `prog: error: argument --repeats: '-1' is not an integer >= 1 (see --help)`."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def number_arg(kind: type = int, low: float | None = None,
               high: float | None = None) -> Callable[[str], int | float]:
    """An argparse `type`: a finite `kind` (int or float) within [low, high], so that a bad
    flag is a usage error naming it, not a traceback later (or a statistic of no runs)."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value) or (low is not None and value < low) or (
                high is not None and value > high):
            what = "an integer" if kind is int else "a number"
            bounds = [f">= {low}"] * (low is not None) + [f"<= {high}"] * (high is not None)
            raise argparse.ArgumentTypeError(f"{text!r} is not {what} {' and '.join(bounds)}"
                                             .rstrip())
        return value
    parse.__name__ = kind.__name__  # argparse names the type in some messages
    return parse
