"""The evaluation's engines side by side: Caffe, ONNX Runtime and PyTorch on the deploy nets.

    .venv/bin/python -m bench.backends [--net deeplab_aspp --net a2] [--tile-repeats 5]
        [--image-repeats 3] [--rows 1] [--threads N] [--batch 7]

For each net (seeded random weights, `decisive_weights`, and the fixed layers), the three engines
of `tools.evaluation.backends` run the same weights (ONNX / .pt2 written from the live
caffe.Net, as `python -m tools.evaluate --backend` does). Timed, alternating the engines (A B C,
then C B A, ...) so that drift in machine load hits all alike, medians over the repeats:
- per tile: one 321 x 321 forward (batch 1), after one warm-up forward each;
- per tiled Cityscapes image: `Predictor.predict_tiled` on a 1024 x 2048 image (28 tiles,
  --batch per forward, paper L349-357); `--rows R` times an R-tile-row image (R x 2048) and
  scales to 4 rows, for a quicker estimate (the output says so).
Prints the medians, the ratio of each engine to Caffe, the machine (cores, load average before
and after) and whether the tiled predictions agree with Caffe's (argmax per pixel, depth).
"""

import argparse
import os
import platform
import statistics
import sys
import time

os.environ.setdefault('GLOG_minloglevel', '2')

import numpy as np

import netgen
from bench.eval import FULL_ROWS, deploy_file
from netgen import config
from netgen.fixed_weights import PREFIX as FIXED_PREFIX
from tools.evaluation.backends import BACKENDS, default_threads, open_backend
from tools.evaluation.predictor import HEADS, Predictor, load_net
from tools.evaluation.tiling import tile_origins
from tools.porting.export import export_live_net


def _parser():
    parser = argparse.ArgumentParser(
        prog='python -m bench.backends', description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument('--net', action='append', choices=netgen.NETS, help='repeatable (default deeplab_aspp, a2)')
    parser.add_argument('--dataset', default='cityscapes', choices=tuple(config.NUM_CLASSES))
    parser.add_argument('--tile-repeats', type=int, default=5, help='timed single-tile forwards per engine')
    parser.add_argument('--image-repeats', type=int, default=3, help='timed tiled images per engine (0: none)')
    parser.add_argument('--rows', type=int, default=FULL_ROWS, choices=range(1, FULL_ROWS + 1))
    parser.add_argument('--batch', type=int, default=7, help='tiles per forward in the tiled image (default 7)')
    parser.add_argument('--threads', type=int, default=default_threads(), help='threads of every engine')
    return parser


def _alternated(engines, repeats, run):
    """{engine: [seconds]} of run(engine) `repeats` times each, in alternating order."""
    seconds, names = {name: [] for name in engines}, list(engines)
    for repeat in range(repeats):
        for name in names if repeat % 2 == 0 else names[::-1]:
            started = time.perf_counter()
            run(name)
            seconds[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in seconds.items()}


def _agreement(outputs):
    """{engine: (argmax agreement with Caffe, max |depth - Caffe's|)} of the tiled predictions."""
    label_ref, depth_ref = outputs['caffe']
    out = {}
    for name, (label, depth) in outputs.items():
        agree = float(np.mean(label == label_ref)) if label is not None else float('nan')
        diff = float(np.abs(depth - depth_ref).max()) if depth is not None else float('nan')
        out[name] = (agree, diff)
    return out


def decisive_weights(net, seed=0, input_scale=50.0):
    """Seeded He-initialised weights (std sqrt(2 / fan in), biases 0.1) for the learned layers,
    the layers reading `data` divided by `input_scale`: an image-scale input then gives logits of a
    trained net's size (about +-25), neither the near-uniform softmax of the fillers (where float
    rounding decides the argmax) nor a saturated one. Fixed layers keep their weights."""
    rng = np.random.default_rng(seed)
    for name, blobs in net.params.items():
        if name.startswith(FIXED_PREFIX):
            continue
        for index, blob in enumerate(blobs):
            shape = blob.data.shape
            fan_in = blob.data.size // shape[1 if net.layer_dict[name].type == 'Deconvolution' else 0]
            std = np.sqrt(2.0 / fan_in) if index == 0 and len(shape) > 1 else 0.1
            blob.data[...] = rng.standard_normal(shape, dtype=np.float32) * np.float32(std)
        if 'data' in net.bottom_names[name]:
            blobs[0].data[...] /= input_scale
    return net


def measure_net(net_name, args):
    """{'tile': {engine: s}, 'image': {engine: s}, 'agreement': {...}} of one deploy net."""
    deploy = deploy_file(net_name, args.dataset)
    net = decisive_weights(load_net(deploy, None))
    engines = {name: open_backend(name, net, deploy, args.threads, export_live_net) for name in BACKENDS}
    heads = [blob for blob in HEADS.values() if blob in net.blobs]
    tile = np.random.default_rng(0).standard_normal((1, 3, config.INPUT_SIZE, config.INPUT_SIZE), np.float32) * 50
    for engine in engines.values():  # warm up: the first forward allocates
        engine.run(tile, heads)
    result = {'tile': _alternated(engines, args.tile_repeats, lambda name: engines[name].run(tile, heads))}
    if args.image_repeats:
        height = 1024 if args.rows == FULL_ROWS else config.INPUT_SIZE * args.rows
        image = np.random.default_rng(1).integers(0, 256, (height, 2048, 3), dtype=np.uint8)
        tasks = [task for task, blob in HEADS.items() if blob in heads]
        predictors = {name: Predictor(engine, tasks, args.batch) for name, engine in engines.items()}
        outputs = {}

        def predict(name):
            outputs[name] = predictors[name].predict_tiled(image)

        scale = FULL_ROWS / args.rows
        result['image'] = {k: v * scale for k, v in _alternated(engines, args.image_repeats, predict).items()}
        result['tiles'] = len(tile_origins(height, 2048))
        result['agreement'] = _agreement(outputs)
    result['versions'] = {name: engine.version for name, engine in engines.items()}
    return result


def _print_net(net_name, result, args):
    print('\n%s/%s, seeded He-init weights, %d threads per engine' % (net_name, args.dataset, args.threads))
    print('| engine | s per tile | x Caffe | s per 1024 x 2048 image | x Caffe | argmax = Caffe | max depth diff |')
    print('|---|---|---|---|---|---|---|')
    for name in BACKENDS:
        tile = result['tile'][name]
        cells = ['%s %s' % (name, result['versions'][name]), '%.3f' % tile, '%.2f' % (result['tile']['caffe'] / tile)]
        if 'image' in result:
            image, (agree, diff) = result['image'][name], result['agreement'][name]
            cells += ['%.1f' % image, '%.2f' % (result['image']['caffe'] / image), '%.6f' % agree, '%.2g' % diff]
        else:
            cells += ['-'] * 4
        print('| ' + ' | '.join(cells) + ' |', flush=True)


def main(argv=None):
    args = _parser().parse_args(argv)
    nets = args.net or ['deeplab_aspp', 'a2']
    load_before = os.getloadavg()
    machine = platform.processor() or platform.machine()
    print('machine: %s, %d cores (%d usable)' % (machine, os.cpu_count(), default_threads()))
    rows = '' if args.rows == FULL_ROWS else ' (%d tile rows timed, scaled x%g)' % (args.rows, FULL_ROWS / args.rows)
    print('repeats: %d per tile, %d per image%s; load average before: %.2f %.2f %.2f' % (
        args.tile_repeats, args.image_repeats, rows, *load_before))  # fmt: skip
    for net_name in nets:
        _print_net(net_name, measure_net(net_name, args), args)
    print('\nload average after: %.2f %.2f %.2f' % os.getloadavg())
    return 0


if __name__ == '__main__':
    sys.exit(main())
