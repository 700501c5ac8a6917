"""Draw a training run's loss curves: `python -m tools.plot_log RUN_DIR` writes RUN_DIR/loss.png
and RUN_DIR/training.md (the loss table: mean of the first and of the last fifth of the steps).
The drawing is `tools.training.plot`.
"""

import argparse
import os
import sys

from tools.core import ToolError, run_cli
from tools.training.plot import PNG, SUMMARY, plot


def _main(argv):
    parser = argparse.ArgumentParser(prog='python -m tools.plot_log', description=__doc__.split('\n\n')[0])
    parser.add_argument('run_dir', metavar='RUN_DIR', help='run directory of tools.train')
    parser.add_argument('--out', help='PNG to write (default RUN_DIR/%s)' % PNG)
    parser.add_argument('--smooth', type=int, help='moving-average window (default: the square root of the steps)')
    args = parser.parse_args(argv)
    try:
        out = plot(args.run_dir, args.out, args.smooth)
    except OSError as err:
        raise ToolError('%s: %s' % (err.filename or args.run_dir, err.strerror)) from None
    except ValueError as err:
        raise ToolError('%s: %s' % (args.run_dir, err)) from None
    print('wrote %s and %s' % (out, os.path.join(args.run_dir, SUMMARY)))
    return 0


def main(argv=None):
    """The command line; returns the exit status (docs/DESIGN.md)."""
    return run_cli(_main, argv)


if __name__ == '__main__':
    sys.exit(main())
