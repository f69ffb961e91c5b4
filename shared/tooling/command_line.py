"""How the course's command lines end on a user's mistake: one line and a non-zero status.

Every script with a `__main__` block (benchmarks, figure drawers,
`python -m shared.tooling.notebooks`) runs its main through `run_main`, parses flags with
`CommandParser`, and checks numeric flags with `number_arg` (paths with `path_arg`), so that a
bad path, flag or cell is named in one line, never a traceback.
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
FLOAT32_MAX = 3.4028234663852886e38


def run_main(main: Callable[[], int | None], prog: str | None = None) -> NoReturn:
    """Run a command line's `main()` and exit with the status it returns (None: 0).

    A user's mistake (USER_ERRORS) ends in one line, `prog: message`, on stderr and status 1
    (a UsageError: `prog: error: message (see --help)` and 2, as argparse's); Ctrl-C in
    `prog: interrupted` and 130, the status a shell gives SIGINT. Any other exception is a
    bug, and keeps its traceback: that is what a traceback is for. `prog` defaults to the
    module run with `python -m` (shared.tooling.notebooks), else the script's file name.
    """
    if prog is None:
        spec = getattr(sys.modules["__main__"], "__spec__", None)
        prog = spec.name if spec else Path(sys.argv[0]).name
    try:
        status = main()
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        status = 130
    except UsageError as error:
        print(f"{prog}: error: {error} (see --help)", file=sys.stderr)
        status = 2
    except USER_ERRORS as error:
        print(f"{prog}: {error_message(error)}", file=sys.stderr)
        status = 1
    sys.exit(status)


def error_message(error: BaseException) -> str:
    """The error's text; for an OS error `path: reason`, not `[Errno 2] reason: 'path'`."""
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        return f"{error.filename}: {error.strerror}"
    return str(error) or type(error).__name__


class UsageError(ValueError):
    """A flag that cannot work, raised before any work starts; `run_main` ends it as a usage
    error (status 2)."""


class CommandParser(argparse.ArgumentParser):
    """argparse, with a usage error in one line and status 2 (not the usage, then the error):
    `prog: error: argument --repeats: -1 must be at least 1 (see --help)`. With
    `raise_errors=True` it raises UsageError instead, for a `main(argv)` that tests call."""

    def __init__(self, *args, raise_errors: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.raise_errors = raise_errors

    def error(self, message: str) -> NoReturn:
        if self.raise_errors:
            raise UsageError(message)
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def number_arg(kind: type = int, low: float | None = None, high: float | None = None, *,
               open_low: bool = False, open_high: bool = False,
               float32: bool = False) -> Callable[[str], int | float]:
    """An argparse `type`: a finite `kind` (int or float) within [low, high] (`open_low`,
    `open_high`: the bound itself excluded), so that a bad flag is a usage error naming it, not
    a traceback later (or a statistic of no runs). `float32`: a float must also fit float32,
    in which training computes (torch would fail mid-step)."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):  # float() parses "nan" and "inf"
            raise argparse.ArgumentTypeError(
                f"{text!r} is not {'an integer' if kind is int else 'a finite number'}")
        if float32 and abs(value) > FLOAT32_MAX:
            raise argparse.ArgumentTypeError(f"{value} is beyond float32's range (at most "
                                             "3.4e+38), in which training computes")
        below = low is not None and (value <= low if open_low else value < low)
        above = high is not None and (value >= high if open_high else value > high)
        if below or above:
            bounds = ([f"{'greater than' if open_low else 'at least'} {low}"] * (low is not None)
                      + [f"{'less than' if open_high else 'at most'} {high}"] * (high is not None))
            raise argparse.ArgumentTypeError(f"{value} must be {' and '.join(bounds)}")
        return value
    parse.__name__ = kind.__name__  # argparse names the type in some messages
    return parse


def path_arg(text: str) -> Path:
    """An argparse `type`: a path, never empty ("" would mean the current folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path (an unset shell variable?)")
    return Path(text)


def device_arg(text: str) -> str:
    """An argparse `type`: a device torch knows, and CUDA only where there is one."""
    import torch  # here, so that command lines without a device flag load without torch

    try:
        device = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a torch device (cpu, cuda, cuda:1 "
                                         "...)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text!r}: this machine has no CUDA device")
    return text


class HelpFormatter(argparse.RawDescriptionHelpFormatter,
                    argparse.ArgumentDefaultsHelpFormatter):
    """--help with the description's lines as written and each flag's default, except where
    it is None or False (the flag's help says what leaving it out means)."""

    def _get_help_string(self, action):
        if action.default in (None, False):
            return action.help
        return super()._get_help_string(action)
