"""What every worker process of ours does first."""
from __future__ import annotations

import ctypes
import os
import signal

__all__ = ["die_with_parent"]


def die_with_parent(parent: int, how: int = signal.SIGKILL) -> None:
    """The worker ends when its parent does, even by kill -9: left alone it would wait on its
    queue for ever, holding its memory and its store connections (Linux's PR_SET_PDEATHSIG; it
    is kept across exec, so a server started this way goes too). `how`: the signal it gets."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, how)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: nothing to ask for
        return
    if os.getppid() != parent:  # the parent died before the request was made
        os._exit(1)
