"""Ctrl-C that never lands mid-step: the first one asks the training loop to stop at the next step
boundary (where it saves and exits with one line); a second one interrupts at once."""

from __future__ import annotations

import signal
import threading


class StopRequest:
    """`with StopRequest() as stop:` ... `if stop.requested: save and exit`. A jitted step donates its
    state buffers, so an interrupt between the call and the assignment of its result would leave
    nothing to save; the flag is only read where the state is whole."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nCtrl-C: stopping after this step (again to stop at once)", flush=True)

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
