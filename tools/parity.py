"""Numerical parity of the ported nets against pycaffe.

    python -m tools.parity --net a1 --dataset cityscapes [--weights W.caffemodel]

prints the table of max relative errors per backend (pytorch, onnx, opencv) and output blob,
on one seeded random input, with seeded random weights when --weights is not given. The
measurement is `tools.porting.parity`.

Exit codes: 0 within tolerance, 1 a backend over the tolerance, 2 bad input.
"""

import argparse
import os
import sys
import tempfile

from tools.core import ToolError, deploy_prototxt, run_cli
from tools.porting.parity import BACKENDS, TOLERANCE, format_table, measure, random_net


def parser():
    result = argparse.ArgumentParser(
        prog='python -m tools.parity',
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    result.add_argument('--net', required=True, help='a1, a2, deeplab_aspp, depthnet, ...')
    result.add_argument('--dataset', required=True, help='cityscapes, sunrgbd or nyuv2')
    result.add_argument('--weights', help='caffemodel (default: seeded random weights)')
    result.add_argument('--backends', default=','.join(BACKENDS), help='comma-separated: %(default)s')
    result.add_argument('--seed', type=int, default=0)
    return result


def _main(argv):
    args = parser().parse_args(argv)
    prototxt = deploy_prototxt(args.net, args.dataset)
    if args.weights and not os.path.isfile(args.weights):
        raise ToolError(f'{args.weights}: no such file')
    backends = args.backends.split(',')
    with tempfile.TemporaryDirectory() as tmp:
        if args.weights:
            results = measure(prototxt, args.weights, backends, args.seed)
        else:
            net = random_net(prototxt, args.seed)
            net.save(os.path.join(tmp, 'random.caffemodel'))
            results = measure(prototxt, os.path.join(tmp, 'random.caffemodel'), backends, args.seed, net)
    print(format_table(results))
    worst = max(err for errors in results.values() for err in errors.values())
    print(f'worst {worst:.1e} (tolerance {TOLERANCE:.0e})')
    return 0 if worst <= TOLERANCE else 1


def main(argv=None):
    """The command line; returns the exit status (docs/DESIGN.md)."""
    return run_cli(_main, argv)


if __name__ == '__main__':
    sys.exit(main())
