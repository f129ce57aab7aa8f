"""The one command-line convention of every command (train.py, test.py, stylize.py, report.py,
bench/bench.py, python -m data.download, python -m data.demo).

=====================  ===========================================================================
``--config FILE``      the command's YAML config; trailing ``key.sub=value`` arguments override it
                       (strict: an unknown key or a bad value names the valid ones)
``--dry-run``          print the resolved config and exit
``--output DIR``       where results go; never equal to or inside an input folder
``--device D``         ``auto`` (CUDA when present), ``cpu``, ``cuda``, ``cuda:N``, ``mps``
``--overwrite``        the only way an existing output file is replaced
exit status            0 done, 1 nothing to do / nothing done, 2 error (one line: what, and what to do),
                       130 interrupted (Ctrl-C)
``--help``             defaults shown, examples printed verbatim, answers in well under a second:
                       entry points import torch only after parsing
=====================  ===========================================================================

This module imports only the standard library and :mod:`utils.errors`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from utils.errors import UserError

EXIT_DONE = 0
EXIT_NOTHING = 1
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Description and epilog verbatim (the examples), ``(default: ...)`` after every option."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the convention's error: one line naming the option and pointing to --help, exit 2
    (argparse's own prints the whole usage block first)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_ERROR, f"error: {message} (see {self.prog} --help)\n")


def parser(doc: str | None, prog: str | None = None) -> argparse.ArgumentParser:
    return ArgumentParser(prog=prog, description=doc, formatter_class=HelpFormatter)


def add_config(p: argparse.ArgumentParser, default: str | None = None, what: str = "YAML config",
               example: str = "optim.lr=1e-4") -> None:
    p.add_argument("--config", default=default, metavar="FILE", help=f"{what} (see experiments/)")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value", help=f"config overrides, e.g. {example}")


def add_output(p: argparse.ArgumentParser, help: str, default: str | None = None, required: bool = False) -> None:
    p.add_argument("--output", default=default, required=required, metavar="DIR", help=help)


def add_device(p: argparse.ArgumentParser, default: str | None = "auto") -> None:
    choices = "auto (CUDA when present), cpu, cuda, cuda:N, mps"
    # %(default).0s prints nothing: it only stops the formatter from adding "(default: None)"
    unset = " (default: the config's device)%(default).0s" if default is None else ""
    p.add_argument("--device", default=default, help=choices + unset)


def add_overwrite(p: argparse.ArgumentParser, help: str = "replace outputs that already exist") -> None:
    p.add_argument("--overwrite", action="store_true", help=help)


def one_line(error: BaseException) -> str:
    """The message of ``error`` on one line. An error re-raised by a DataLoader worker carries the
    worker's whole traceback ("Caught DatasetError in DataLoader worker process 0 ..."): its own
    message is the last line."""
    text = str(error).strip()
    if text.startswith("Caught ") and "Original Traceback" in text:
        last = text.splitlines()[-1]
        text = last.split(": ", 1)[1] if ": " in last else last
    return " ".join(text.split()) or type(error).__name__


def run(body: Callable[[], int]) -> int:
    """Run a command's body: a :class:`UserError` becomes ``error: ...`` and exit 2, Ctrl-C exit 130."""
    try:
        return body()
    except UserError as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
