"""The error of an unusable dataset folder (no torch import: the demo generator's --help stays fast)."""

from __future__ import annotations

from utils.errors import UserError


class DatasetError(UserError):
    """The dataset folder is missing or unusable; the message says what to do."""
