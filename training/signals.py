"""Ctrl-C and SIGTERM during training: the first asks for a clean stop (checkpoint, exit 0),
the second aborts at once (exit 130, no checkpoint)."""

from __future__ import annotations

import signal
import sys
from types import FrameType
from typing import Any


class StopRequests:
    """Installs the handlers for its ``with`` block; ``requested`` turns True at the first signal."""

    def __init__(self, announce: bool = True) -> None:
        self.requested = False
        self.announce = announce
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:  # second signal: stop now
            raise KeyboardInterrupt
        self.requested = True
        if self.announce:
            print(f"\n{signal.Signals(signum).name} received: saving a checkpoint and exiting "
                  f"(send again to abort without saving)", file=sys.stderr, flush=True)

    def __enter__(self) -> StopRequests:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. a test runner thread): no handlers
                pass
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def ignore_stop_signals(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: a forked worker inherits the trainer's handlers, so a Ctrl-C to
    the process group would set its own flag, print the notice again and, the second time, kill the
    worker mid-batch. Workers ignore the signals; the trainer stops them when it exits."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
