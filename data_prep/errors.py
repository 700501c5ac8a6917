"""The one error type of `data_prep`: a fault in an input or output file.

Every converter, the database reader and the data layer raise `DataError(path, fault)`
so that a person sees which file is wrong and how: ``str(err) == "<path>: <fault>"``.
`Terminated` / `raise_on_sigterm`: SIGTERM as an exception, so that the clean-up of a Ctrl-C
runs for it too (every command line of the project uses them; `tools.core` too).
"""

import os
import signal


class DataError(Exception):
    """A file that cannot be used as it is: `path` names it, `fault` says what is wrong."""

    def __init__(self, path, fault):
        super().__init__(str(path), str(fault))
        self.path = str(path)
        self.fault = str(fault)

    def __str__(self):
        return f'{self.path}: {self.fault}'


class Terminated(KeyboardInterrupt):
    """SIGTERM raised in the main process like Ctrl-C (`raise_on_sigterm`), so that the same
    clean-up runs (`finally`, `except BaseException`); the command lines exit 143 for it."""


def raise_on_sigterm():
    """From now on SIGTERM raises `Terminated` instead of killing the process outright, in this
    process only: a forked child that inherits the handler (a conversion or data-layer worker)
    dies of it as by default. Returns the previous handler."""
    pid = os.getpid()

    def handler(signum, frame):
        if os.getpid() != pid:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise Terminated()

    return signal.signal(signal.SIGTERM, handler)
