"""What stops a training run: a signal (SIGINT, SIGTERM) or a loss or weight that is not finite.

A signal only sets a flag: Caffe is inside `solver.step` and finishes the iteration, then the
driver snapshots and exits. A second SIGINT restores the default action (kill at once).

A NaN must stop the run before Caffe runs another forward pass: BVLC max pooling keeps index
-1 for an all-NaN window, its backward pass writes before the buffer, and freeing the net later
aborts with a double free. So the driver checks every loss term after each step and the
weights (a float64 sum per blob, about 0.1 s per 100M weights) before the next one, and on a
fault leaves with `os._exit` (no destructor runs) after flushing its logs, keeping the last
good snapshot.
"""

import math
import os
import signal
import sys

import numpy as np

from tools.core import EXIT_SIGINT, EXIT_SIGTERM

#: Exit codes of the driver (docs/DESIGN.md).
EXIT_SIGNAL = {signal.SIGINT: EXIT_SIGINT, signal.SIGTERM: EXIT_SIGTERM}


class StopFlag:
    """Installs SIGINT/SIGTERM handlers that record the first signal; `restore()` puts back
    the previous handlers."""

    def __init__(self, signals=(signal.SIGINT, signal.SIGTERM)):
        self.signum = None
        self._pid = os.getpid()
        self._old = {s: signal.signal(s, self._handle) for s in signals}

    def _handle(self, signum, frame):
        if os.getpid() != self._pid:
            # a forked child (e.g. a data layer's worker) inherited the handler: act as if it
            # had none, so that its parent can terminate it
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        if self.signum is None:
            self.signum = signum
            sys.stderr.write(
                '\n%s: stopping after this iteration with a snapshot (Ctrl-C again '
                'to abort at once, without one)\n' % signal.Signals(signum).name
            )
            sys.stderr.flush()
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    def __bool__(self):
        return self.signum is not None

    @property
    def name(self):
        return signal.Signals(self.signum).name if self.signum else None

    def restore(self):
        for s, old in self._old.items():
            signal.signal(s, old)


def nonfinite_losses(losses):
    """Names of the loss terms (a {name: value} dict) that are NaN or infinite."""
    return [k for k, v in losses.items() if not math.isfinite(v)]


def nonfinite_params(net):
    """Names of the layers of `net` holding a NaN or infinite weight."""
    bad = []
    for name, blobs in net.params.items():
        if not all(math.isfinite(float(b.data.sum(dtype=np.float64))) for b in blobs):
            bad.append(name)
    return bad
