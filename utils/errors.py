"""The one base class for mistakes a user can fix.

Every command catches :class:`UserError`, prints ``error: <message>`` on one line and exits
with status 2 (see :mod:`options.cli`). Each subsystem raises its own subclass (``ConfigError``,
``DatasetError``, ``CheckpointError`` ...), whose message names the file or key at fault and
what to do. Anything else that escapes is a bug and keeps its traceback.

No imports beyond the standard library: the commands' ``--help`` must stay fast.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake in the user's input or environment; ``str(e)`` is the whole explanation."""


class DatasetError(UserError):
    """The dataset folder is missing or unusable; the message says what to do."""
