"""Train a net (or DepthNet's three stages) through pycaffe: the paper's sec. 4.3.

    python -m tools.train --net a2 --dataset cityscapes --init-deeplab init.caffemodel \\
        --init-depthnet depthnet_global.caffemodel [--gpu 0] [--iters N] [--resume auto]

The run itself is `tools.training.run` (solver copy, initialisation, snapshots, resume, logs,
guards); docs/TRAINING.md is the user's guide.

Exit codes: 0 done, 2 bad input, 3 NaN/inf stop, 130/143 stopped by SIGINT/SIGTERM.
"""

import argparse
import dataclasses
import os
import sys

from tools.core import interruptible_imports, run_cli

with interruptible_imports(__name__):  # Ctrl-C / SIGTERM while Caffe loads: one line, exit 130 / 143
    from tools.training import run
    from tools.training.distributed import LR_SCALING
    from tools.training.solver_config import FILLERS


def loss_weight(text):
    """argparse type of --loss-weight: 'loss_x=0.5' -> ('loss_x', 0.5)."""
    name, _, value = text.partition('=')
    try:
        if not name.startswith(run.LOSS_PREFIX):
            raise ValueError
        return name, float(value)
    except ValueError:
        raise argparse.ArgumentTypeError('expected %sNAME=WEIGHT, got %r' % (run.LOSS_PREFIX, text)) from None


def _what_and_where(parser):
    parser.add_argument('--net', choices=run.NETS, help='net to train (depthnet: its three stages)')
    parser.add_argument('--dataset', choices=run.netgen.DATASETS, help='dataset')
    device = parser.add_mutually_exclusive_group()
    device.add_argument('--gpu', type=int, metavar='N', help='GPU id (a CUDA build of Caffe)')
    device.add_argument('--cpu', action='store_true', help='run on the CPU (the default)')
    parser.add_argument(
        '--iters',
        type=int,
        metavar='N',
        help="iterations per stage (default: the solver's max_iter; poly decay follows it)",
    )
    parser.add_argument(
        '--resume', metavar='auto|FILE', help='continue from the newest .solverstate of --out (auto) or FILE'
    )
    parser.add_argument('--out', metavar='DIR', help='run directory (default runs/<net>_<dataset>)')
    parser.add_argument(
        '--data', metavar='DIR', help="the dataset's database root, one folder per split (default data/<dataset>)"
    )
    parser.add_argument('--solver', metavar='FILE', help='train this solver prototxt instead of the generated one(s)')


def _initialisation(parser):
    parser.add_argument(
        '--init-deeplab', metavar='FILE', help="DeepLab's ImageNet init caffemodel (or a VGG16 with reduced fc6/fc7)"
    )
    parser.add_argument(
        '--init-depthnet', metavar='FILE', help="DepthNet's caffemodel: A2's global depth net, layers that fit"
    )
    parser.add_argument(
        '--weights',
        nargs='+',
        default=[],
        metavar='FILE',
        help='caffemodels whose same-named layers are copied (after the inits)',
    )
    parser.add_argument(
        '--init-classifier',
        type=int,
        default=0,
        metavar='N',
        help='demo only: fit the ASPP classifier fc8_i by ridge regression on the features '
        'of N training batches before training (a stand-in for a pretrained model; '
        'tools/training/classifier_init.py)',
    )
    parser.add_argument(
        '--probe-classifier',
        type=int,
        default=0,
        metavar='N',
        help='demo only: after training, refit fc8_i the same way on the trained features '
        '(a linear probe; the final weights hold it)',
    )
    parser.add_argument(
        '--probe-depth',
        type=int,
        default=0,
        metavar='N',
        help='demo only: after training, fit the last depth layer refine_conv5 by ridge regression '
        'on the refine_conv4 features of the first N training images, each resized whole to the input as '
        '`tools.evaluate --mode resize` does (tools/training/depth_fit.py)',
    )
    parser.add_argument(
        '--filler',
        choices=FILLERS,
        default='as-generated',
        help='weight fillers of the layers no model initialises: as generated (the '
        "paper's Gaussian, default) or msra (He et al.; for short runs from scratch "
        'such as `make demo`)',
    )


def _overrides(parser):
    parser.add_argument('--batch', type=int, metavar='N', help="train batch size (default: the net's)")
    parser.add_argument('--base-lr', type=float, metavar='LR', help='base learning rate override')
    parser.add_argument(
        '--solver-type', choices=run.SOLVER_TYPES, help="Caffe solver type override (default: the solver's, SGD)"
    )
    parser.add_argument(
        '--loss-weight',
        type=loss_weight,
        action='append',
        default=[],
        metavar='TOP=W',
        help="loss weight override, repeatable, e.g. loss_seg=100 (the paper's alpha is 1000, L322-325)",
    )
    parser.add_argument('--seed', type=int, default=1, help='Caffe random seed (default 1)')
    parser.add_argument(
        '--lr-scaling',
        choices=sorted(LR_SCALING),
        default='none',
        help='under torchrun: base_lr times the number of ranks (linear) or its square root (sqrt) for the '
        "larger effective batch; default none: the solver's (the paper's) learning rate untouched",
    )
    parser.add_argument(
        '--collective-timeout',
        type=float,
        default=600,
        metavar='S',
        help='under torchrun: seconds a rank waits for the others before the job ends (default 600)',
    )
    parser.add_argument(
        '--allow-changes',
        action='store_true',
        help='resume although these settings differ from those the run was started with (RUN/run.json '
        'records the change)',
    )


def _monitoring(parser):
    parser.add_argument(
        '--snapshot-every', type=int, metavar='N', help="snapshot interval (default: the solver's snapshot field)"
    )
    parser.add_argument('--display', type=int, metavar='N', help='console line every N iterations')
    parser.add_argument(
        '--test-every',
        type=int,
        default=0,
        metavar='N',
        help="log the test net's losses every N iterations (default 0: never)",
    )
    parser.add_argument(
        '--test-iters', type=int, default=10, metavar='N', help='test batches per --test-every (default 10)'
    )
    parser.add_argument(
        '--check-weights-every',
        type=int,
        default=1,
        metavar='N',
        help='check the weights for NaN/inf every N iterations (default 1; 0: never, then only the losses are checked)',
    )
    parser.add_argument('--no-plot', action='store_true', help='do not draw RUN_DIR/loss.png')
    parser.add_argument('--quiet', action='store_true', help='no progress bar')
    # test hooks: a NaN weight after iteration N; a SIGINT's effect after iteration N
    parser.add_argument('--inject-nan-at', type=int, help=argparse.SUPPRESS)
    parser.add_argument('--inject-stop-at', type=int, help=argparse.SUPPRESS)
    # test hook: seconds between renaming a snapshot's caffemodel and its solverstate (a kill's window)
    parser.add_argument('--inject-snapshot-pause', type=float, help=argparse.SUPPRESS)


def parser():
    result = argparse.ArgumentParser(
        prog='python -m tools.train',
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='Exit codes: 0 done, 2 bad input, 3 NaN/inf stop, 130/143 SIGINT/SIGTERM '
        '(snapshot written). See docs/TRAINING.md.',
    )
    for group in (_what_and_where, _initialisation, _overrides, _monitoring):
        group(result)
    return result


def parse_args(argv=None):
    """The command line as `tools.training.run.TrainOptions`."""
    cli = parser()
    args = cli.parse_args(argv)
    if args.solver is None and (args.net is None or args.dataset is None):
        cli.error('--net and --dataset are required (or give --solver)')
    if args.solver is not None and args.net is None:
        args.net = os.path.splitext(os.path.basename(args.solver))[0]
    for name in ('iters', 'batch', 'snapshot_every', 'display', 'test_iters'):
        value = getattr(args, name)
        if value is not None and value < 1:
            cli.error('--%s must be >= 1' % name.replace('_', '-'))
    fields = {f.name for f in dataclasses.fields(run.TrainOptions)}
    return run.TrainOptions(**{k: v for k, v in vars(args).items() if k in fields})


def _main(argv):
    options = parse_args(argv)
    try:
        final = run.train(options)
    except run.Stopped as stopped:
        return stopped.code
    print('final weights: %s' % final)
    return 0


def main(argv=None):
    """The command line; returns the exit status (docs/DESIGN.md)."""
    return run_cli(_main, argv)


if __name__ == '__main__':
    sys.exit(main())
