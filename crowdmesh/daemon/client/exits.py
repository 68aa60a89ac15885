"""Exit statuses of the ``crowdmesh`` command, and how an error becomes one.

Rule 1: 0 success, 1 an error from the daemon or bad input, 2 usage (argparse), 3 the daemon
cannot be reached, 78 (``EX_CONFIG``) ``crowdmesh daemon`` stopped on a ``CrowdmeshError`` that
retrying cannot fix, 130 interrupted, 141 the reader of stdout went away (``| head -1``; 128 +
SIGPIPE, as a C tool killed by SIGPIPE reports). The systemd units list 78 in
``RestartPreventExitStatus=``, so the number is part of the install contract.
Rule 2: an error is reported as one line per exception, ``error: <code>: <detail>`` on stderr,
never a traceback (a traceback means a bug).
"""

from __future__ import annotations

import os
import sys
from typing import Any, Final

__all__ = [
    "EXIT_BROKEN_PIPE",
    "EXIT_CONFIG",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "fail",
    "quiet_broken_pipe",
]

EXIT_OK: Final = 0
EXIT_ERROR: Final = 1
EXIT_USAGE: Final = 2  # argparse exits with it by itself
EXIT_UNREACHABLE: Final = 3
EXIT_CONFIG: Final = 78  # sysexits.h EX_CONFIG
EXIT_INTERRUPTED: Final = 130  # 128 + SIGINT, as shells report it
EXIT_BROKEN_PIPE: Final = 141  # 128 + SIGPIPE


def quiet_broken_pipe() -> int:
    """Stdout's reader went away (``crowdmesh --json tx ID | head -1``): end quietly.

    Points stdout at /dev/null first: Python flushes stdout again at exit and would print
    ``Exception ignored … BrokenPipeError`` there (Python's ``signal`` docs, "Note on SIGPIPE").

    Returns:
        :data:`EXIT_BROKEN_PIPE`.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)
    return EXIT_BROKEN_PIPE


def fail(group: BaseExceptionGroup[Any], status: int) -> int:
    """Print every exception in ``group`` as one ``error:`` line on stderr; return ``status``."""
    for exc in _leaves(group):
        print(f"error: {exc}", file=sys.stderr)
    return status


def _leaves(group: BaseException) -> list[BaseException]:
    if isinstance(group, BaseExceptionGroup):
        return [leaf for e in group.exceptions for leaf in _leaves(e)]
    return [group]
