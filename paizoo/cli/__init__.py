"""The ``paizoo`` command line.

Each module in this package defines ``register(subparsers)``, adding its sub-commands with
``parser.set_defaults(func=handler)``; modules are discovered automatically, so a new command is
one new file. Handlers return an exit code.

Errors: every failure is one ``paizoo: error: ...`` line on stderr, without a traceback (``--debug``
anywhere on the command line shows it), and the exit code says whose it is: 2 for the command
line (a bad argument or option value, a named file or dataset that is not there, a config that
does not validate), 1 at run time (an unreadable mask file, dataset file or results store, a
failure writing a file, and any unexpected error). Output files named on the
command line must be in an existing folder (paizoo creates no folder for them).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sqlite3
import sys
import traceback
from collections.abc import Sequence

from ..errors import (
    DatasetFormatError,
    MaskFileError,
    PaizooError,
)

USAGE, RUNTIME = 2, 1


class _Parser(argparse.ArgumentParser):
    """argparse with the one-line error format of every other paizoo error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(USAGE, f"paizoo: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = _Parser(
        prog="paizoo",
        description="Pruning-at-initialization zoo: prune, train, rank and analyse masks.")
    parser.add_argument("--version", action="version", version=f"paizoo {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an error (accepted anywhere on the line)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return USAGE
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("paizoo: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if debug:
            traceback.print_exc()
        code, message = describe_error(exc)
        print(f"paizoo: error: {message}", file=sys.stderr)
        return code


#: errors of the run, not of the command line (exit code 1)
_RUNTIME_ERRORS: tuple[type[BaseException], ...] = (
    DatasetFormatError, MaskFileError, sqlite3.Error)


def describe_error(exc: BaseException) -> tuple[int, str]:
    """``(exit code, one-line message)`` for an exception raised by a command."""
    from ..results.store import StoreError
    from ..training.masking import MaskViolationError

    text = _one_line(str(exc)) or type(exc).__name__
    if isinstance(exc, (*_RUNTIME_ERRORS, StoreError, MaskViolationError)):
        return RUNTIME, text
    if isinstance(exc, (PaizooError, argparse.ArgumentTypeError, FileNotFoundError)):
        return USAGE, text
    if isinstance(exc, OSError):  # writing or reading a file failed
        return RUNTIME, text
    return RUNTIME, (f"unexpected {type(exc).__name__}: {text} (rerun with --debug for the "
                     "traceback, and please report it)")


def _one_line(text: str) -> str:
    """A multi-line message on one line: items joined by '; ' (after a ':' by a space)."""
    out = ""
    for line in (x.strip() for x in text.splitlines()):
        if not line:
            continue
        out += ("" if not out else " " if out.endswith(":") else "; ") + line
    return out


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
