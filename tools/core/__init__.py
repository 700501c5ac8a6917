"""The small foundation every tool shares (no Caffe import here).

- `REPO`: the repository root (generated nets, solvers and default data paths hang off it);
  `deploy_prototxt(net, dataset)`, the generated deploy net.
- `ToolError`: an expected fault (bad input, a missing or damaged file); its message names the
  file and the fault. `run_cli(main)` turns it (and `data_prep`'s `DataError`) into one line on
  stderr and exit status 2, the convention of docs/DESIGN.md ("One command-line convention").
- `quiet_glog()`, `use_device(gpu)`, `gpu_available(gpu)`: Caffe's logging and device choice.
- `tools.core.protos`: text and binary protos (nets, solvers, caffemodels) and copying weights
  into a live net by layer name with one shape rule.
"""

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

from data_prep.errors import DataError, Terminated, raise_on_sigterm

REPO = Path(__file__).resolve().parents[2]

EXIT_OK, EXIT_BUG, EXIT_BAD_INPUT, EXIT_NONFINITE = 0, 1, 2, 3
EXIT_SIGINT, EXIT_SIGTERM = 130, 143


class ToolError(Exception):
    """An expected fault: a message for the user (naming the file and the fault), no traceback."""


def _interrupted(err):
    """One line for a Ctrl-C or SIGTERM, and its exit status."""
    terminated = isinstance(err, Terminated)
    print('\n%s' % ('terminated (SIGTERM)' if terminated else 'interrupted (SIGINT)'), file=sys.stderr)
    return EXIT_SIGTERM if terminated else EXIT_SIGINT


@contextlib.contextmanager
def interruptible_imports(name):
    """Around a command line's module-level imports (seconds for Caffe and torch): when run as
    a program (`name` is '__main__'), SIGTERM raises from now on (`raise_on_sigterm`), and a
    Ctrl-C or SIGTERM while the imports load exits with one line, not a traceback."""
    if name != '__main__':
        yield
        return
    raise_on_sigterm()
    on_sigterm, received = signal.getsignal(signal.SIGTERM), []

    def on_signal(signum, frame):
        received.append(signum)
        if signum == signal.SIGTERM:
            on_sigterm(signum, frame)  # raises Terminated (a forked child dies of it instead)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        yield
    except (KeyboardInterrupt, ImportError) as err:
        # numpy's C import turns a signal's exception inside it into an ImportError
        if isinstance(err, ImportError) and not received:
            raise
        if not isinstance(err, KeyboardInterrupt):
            err = Terminated() if received[-1] == signal.SIGTERM else KeyboardInterrupt()
        status = _interrupted(err)
        sys.stderr.flush()
        # not sys.exit: a Ctrl-C inside an extension's own PyRun_String (Caffe's and torch's
        # imports run some) leaves CPython's "unhandled KeyboardInterrupt" flag set even though
        # it was handled here, and the interpreter would then kill itself with SIGINT at exit
        os._exit(status)
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, on_sigterm)


def deploy_prototxt(net, dataset):
    """The generated deploy net of `net` for `dataset` (netgen's layout, under `REPO`)."""
    import netgen  # noqa: PLC0415 (netgen imports nothing of tools)

    return netgen.paths(net, dataset, root=str(REPO))['deploy']


def quiet_glog():
    """Keep Caffe's net dumps off the console (before `import caffe`; children inherit it)."""
    os.environ.setdefault('GLOG_minloglevel', '2')


def gpu_available(device):
    """Whether this Caffe build can use GPU `device` (a CPU-only build aborts the process when
    asked for a GPU, so ask in a child process)."""
    probe = 'import caffe; caffe.set_mode_gpu(); caffe.set_device(%d)' % device
    return subprocess.run([sys.executable, '-c', probe], capture_output=True).returncode == 0


def use_device(gpu=None):
    """Caffe's mode: GPU `gpu` (checked first) or the CPU when None."""
    import caffe  # noqa: PLC0415 (the foundation imports without Caffe)

    if gpu is None:
        caffe.set_mode_cpu()
        return 'cpu'
    if not gpu_available(gpu):
        raise ToolError(
            '--gpu %d: this Caffe build cannot use GPU %d (a CPU-only build, or no such '
            'device); build with `make setup CAFFE_GPU=1`' % (gpu, gpu)
        )
    caffe.set_mode_gpu()
    caffe.set_device(gpu)
    return 'gpu %d' % gpu


def run_cli(main, argv=None):
    """Run `main(argv)` under the convention: an expected fault (`ToolError`, `DataError`, an
    OSError naming a file) -> `error: ...` on stderr and exit 2; KeyboardInterrupt -> 130 (`Terminated`, 143).
    Returns the exit status."""
    try:
        return main(argv)
    except (ToolError, DataError) as err:
        print('error: %s' % err, file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as err:  # a missing, unreadable or unwritable file; a full disk
        if not err.filename:
            raise
        print('error: %s: %s' % (err.filename, err.strerror or err), file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt as err:  # SIGTERM too, where the tool called `raise_on_sigterm`
        return _interrupted(err)
