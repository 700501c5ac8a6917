"""`make demo`, the README's first command: the whole pipeline in minutes on the CPU.

1. `python -m data_prep sample` writes procedurally rendered street scenes in Cityscapes' official
   layout (colour, labelIds, disparity, camera files), `python -m data_prep cityscapes` converts them;
2. `python -m tools.train` trains HybridNet A2 on them (demo settings below);
3. `tools.evaluate` scores the sample's val split and draws the figures;
4. the loss table, the evaluation table and a verdict on both tasks: the segmentation loss falls
   and the val mIoU is above chance (1/19); the val depth beats the constant predictor (the
   training set's mean depth) on ARD and on RMSE. Exit status 1 when either task did not learn.

Demo-only settings (docs/FIDELITY.md, "Training"): no pretrained model can be downloaded here, so
the run starts from scratch with MSRA fillers (`--filler msra`) instead of DeepLab's and DepthNet's
models. A few dozen gradient steps from random weights find no classifier on the random features,
although ridge regression finds one at once: the ASPP classifier is fitted that way on 6 training
batches before training (`--init-classifier 6`, a stand-in for a pretrained classifier) and
refitted on the trained features after it (`--probe-classifier 6`, a linear probe: the evaluated
weights hold it). Likewise the depth: a dozen steps leave the depth map nearly constant, so the
last depth layer (refine_conv5) is fitted by ridge regression on the trained refine_conv4
features of the training images, resized whole as the evaluation resizes the val images, after
training (`--probe-depth 6`, tools/training/depth_fit.py). Adam instead of SGD
(its step does not depend on the scale of the gradients,
which from scratch is far from a pretrained net's; SGD at the paper's rate diverges), batch 1
instead of 7, 12 iterations instead of 100K; the sample is a handful of rendered scenes;
evaluation resizes each image to the input instead of tiling it (one forward pass per image
instead of 28). None of this is the paper's recipe: the demo shows that the pipeline runs end to
end and that the training loss falls, not the paper's numbers.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

from data_prep.database import open_database
from netgen.config import MAX_DEPTH
from tools.evaluation.metrics import DepthMeter
from tools.training.log import loss_summary, read_log

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NET, DATASET, CLASSES = 'a2', 'cityscapes', 19
DEFAULTS = dict(out=os.path.join('runs', 'demo'), count=4, iters=12, lr=1e-5, seed=1)
CLASSIFIER_BATCHES = 6
DEPTH_IMAGES = 6


def step(title, command, timings):
    print('\n== %s\n$ %s' % (title, ' '.join(command)), flush=True)
    start = time.time()
    code = subprocess.call(command, cwd=REPO)
    timings.append((title, time.time() - start))
    if code:
        print('make demo: "%s" failed (exit %d)' % (title, code), file=sys.stderr)
        sys.exit(code)


def constant_depth_baseline(data, max_depth=MAX_DEPTH[DATASET]):
    """The trivial depth predictor: the training set's mean valid depth (up to the bound the
    net trains and is evaluated with), scored on val like the net (per image, then averaged).
    Returns (mean depth, {metric: value})."""
    total, count = 0.0, 0
    train = open_database(os.path.join(data, 'train'))
    for i in range(len(train)):
        depth = train[i].depth
        valid = (depth > 0) & (depth <= max_depth)
        total, count = total + float(depth[valid].sum()), count + int(valid.sum())
    mean = total / count
    meter, val = DepthMeter(max_depth=max_depth), open_database(os.path.join(data, 'val'))
    for i in range(len(val)):
        depth = val[i].depth
        meter.update(np.full(depth.shape, mean, np.float32), depth)
    return mean, meter.scores()['per_image']


def depth_verdict(report, baseline):
    """(lines, beaten): the net's val ARD and RMSE beside the constant predictor's."""
    mean, constant = baseline
    net = report['depth']['per_image']
    lines = ['val depth (per image; constant predictor = training mean %.1f m):' % mean]
    beaten = True
    for key, name in (('ard', 'ARD'), ('rmse', 'RMSE')):
        better = net[key] < constant[key]
        beaten &= better
        lines.append(
            '  %-4s net %.4g vs constant %.4g: %s'
            % (name, net[key], constant[key], 'better' if better else 'NOT better')
        )
    return lines, beaten


def verdict(train_dir, eval_dir, baseline=None):
    """(lines, learned): `loss_seg` over the first vs the last third of the iterations, the
    val mIoU vs chance and, given the constant predictor's scores (`constant_depth_baseline`),
    the val depth vs that predictor on ARD and RMSE. The total loss is shown too but not judged:
    at batch 1 it follows the depth of each crop (`loss_depth_abs` sums squared metres)."""
    log = read_log(train_dir)
    thirds = max(1, sum(r['event'] == 'iter' for r in log) // 3)
    rows = {term: (first, last, iters) for _, term, first, last, iters in loss_summary(log, thirds)}
    with open(os.path.join(eval_dir, 'report.json')) as f:
        results = json.load(f)
    miou = results['segmentation']['mIoU']
    first, last, iters = rows['loss_seg']
    falling, above = last < first, miou > 1.0 / CLASSES
    lines = [
        'loss_seg %.4g -> %.4g (mean of the first and the last third of %d iterations): %s'
        % (first, last, iters, 'falling' if falling else 'NOT falling'),
        'total loss %.4g -> %.4g' % rows['loss'][:2],
        'val mIoU %.2f %% vs chance %.2f %% (1/%d): %s'
        % (100 * miou, 100.0 / CLASSES, CLASSES, 'above' if above else 'NOT above'),
    ]
    if baseline is None:
        return lines, falling and above
    depth_lines, beaten = depth_verdict(results, baseline)
    return lines + depth_lines, falling and above and beaten


def _parser():
    parser = argparse.ArgumentParser(prog='python -m tools.demo', description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', default=DEFAULTS['out'], help='demo directory, emptied first (default %(default)s)')
    parser.add_argument(
        '--count', type=int, default=DEFAULTS['count'], help='sample scenes per split (default %(default)s)'
    )
    parser.add_argument(
        '--iters', type=int, default=DEFAULTS['iters'], help='training iterations (default %(default)s)'
    )
    parser.add_argument('--lr', type=float, default=DEFAULTS['lr'], help='base learning rate (default %(default)s)')
    parser.add_argument(
        '--seed', type=int, default=DEFAULTS['seed'], help='sample and Caffe seed (default %(default)s)'
    )
    return parser  # fmt: skip


def _steps(args, out):
    """(title, command) of each step, and the train and eval directories."""
    py, sample, data = sys.executable, os.path.join(out, 'sample'), os.path.join(out, 'data')
    train_dir, eval_dir = os.path.join(out, 'train'), os.path.join(out, 'eval')
    steps = [
        ('sample data (Cityscapes layout)', [py, '-m', 'data_prep', 'sample', '--dataset', DATASET, '--out', sample,
                                             '--count', str(args.count), '--seed', str(args.seed)]),
        ('convert', [py, '-m', 'data_prep', DATASET, '--root', sample, '--out', data]),
        ('train A2 (CPU)', [py, '-m', 'tools.train', '--net', NET, '--dataset', DATASET, '--cpu', '--data', data,
                            '--out', train_dir, '--iters', str(args.iters), '--batch', '1', '--filler', 'msra',
                            '--solver-type', 'Adam', '--init-classifier', str(CLASSIFIER_BATCHES),
                            '--probe-classifier', str(CLASSIFIER_BATCHES), '--probe-depth', str(DEPTH_IMAGES),
                            '--base-lr', str(args.lr),
                            '--seed', str(args.seed), '--display', '5']),
        ('evaluate (val)', [py, '-m', 'tools.evaluate', '--net', NET, '--dataset', DATASET,
                            '--weights', os.path.join(train_dir, 'final.caffemodel'), '--data', data,
                            '--out', eval_dir, '--overwrite', '--mode', 'resize']),
    ]  # fmt: skip
    return steps, train_dir, eval_dir


def main(argv=None):
    args = _parser().parse_args(argv)
    out = os.path.abspath(args.out)
    steps, train_dir, eval_dir = _steps(args, out)
    shutil.rmtree(out, ignore_errors=True)
    timings, start = [], time.time()
    for title, command in steps:
        step(title, command, timings)
    for name in (os.path.join(train_dir, 'training.md'), os.path.join(eval_dir, 'report.md')):
        with open(name) as f:
            print('\n' + f.read())
    lines, learned = verdict(train_dir, eval_dir, constant_depth_baseline(os.path.join(out, 'data')))
    print('== demo (%.0f s: %s)' % (time.time() - start, ', '.join('%s %.0f s' % t for t in timings)))
    print('\n'.join(lines))
    print('loss curves: %s\nreport and figures: %s' % (os.path.join(train_dir, 'loss.png'), eval_dir))
    if not learned:
        print('make demo: the run did not learn both tasks (see above)', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
