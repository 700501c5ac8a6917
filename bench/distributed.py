"""Data-parallel training's cost: the gradient all-reduce per net, and scaling on CPU ranks.

    .venv/bin/python -m bench.distributed [--ranks 2] [--repeats 3] [--iters 30] [--json FILE]

1. Communication per iteration, per net: `tools.training.distributed.GradientAverager` (what runs
   in `on_gradients_ready`) on `--ranks` gloo processes, with stand-in blobs of the sizes of the
   net's trainable blobs (netgen's shapes, lr_mult > 0): as training runs it (blobs of >= 4 MB
   all-reduced in place, the rest through one buffer), with every diff through a flat buffer (the
   copies an all-reduce on a separate buffer costs), and the all-reduce alone of that many floats
   (the wire); medians over `--repeats`. pycaffe exposes blobs as host arrays, so on GPUs the
   diffs would also cross PCIe (device -> host -> device); that needs a CUDA build and is not
   measured here.
2. Scaling on CPU ranks: `python -m tools.train` on a small net fed by `HybridData` (a database
   written into a temporary directory), 1 process vs `--ranks` processes under torchrun, the
   same batch per rank; wall seconds per iteration (median of the log's timestamps after 5
   warm-up iterations) and the efficiency = (ranks x images/s of 1 process)^-1 x images/s of N.
"""

import argparse
import functools
import json
import math
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault('GLOG_minloglevel', '2')

import numpy as np

from netgen import shapes
from tools.core import REPO
from tools.core.protos import read_net

NETS = ('a1', 'a2', 'deeplab_aspp', 'depthnet_global', 'depthnet_gradient', 'depthnet_refine')


class StandInBlob:
    """What GradientAverager reads of a pycaffe blob: `diff` (a host array) and `count`."""

    def __init__(self, count):
        self.diff = np.ones(count, np.float32)
        self.count = count


def trainable_blobs(net):
    """Sizes of the trainable (lr_mult > 0) parameter blobs of a generated train net."""
    path = os.path.join(REPO, 'prototxt', '%s_cityscapes' % net, 'train.prototxt')
    params = shapes.infer(read_net(path))[1].values()
    return [math.prod(shape) for blobs, mults in params for shape, mult in zip(blobs, mults) if mult > 0]


def _timed(dist, function, repeats):
    times = []
    for _ in range(repeats + 1):  # the first is a warm-up
        dist.barrier()
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def _allreduce_rank(rank, size, port, nets, repeats, out):
    import torch  # noqa: PLC0415
    import torch.distributed as dist  # noqa: PLC0415

    from tools.training import distributed  # noqa: PLC0415

    dist.init_process_group('gloo', init_method='tcp://127.0.0.1:%d' % port, rank=rank, world_size=size)
    world = distributed.World(dist, rank, size, rank, 'gloo')
    results = {}
    for net, sizes in nets.items():
        blobs = [StandInBlob(c) for c in sizes]
        averager = distributed.GradientAverager(world, blobs)  # what training runs
        flat_only = distributed.GradientAverager(world, blobs, direct=float('inf'))  # every diff copied
        wire = torch.zeros(sum(sizes))
        results[net] = dict(
            in_place=_timed(dist, averager, repeats),
            flat_buffer=_timed(dist, flat_only, repeats),
            allreduce_only=_timed(dist, functools.partial(averager._all_reduce, wire), repeats),
            blobs=len(sizes),
            in_place_blobs=len(averager.direct),
        )
        assert np.allclose(blobs[0].diff[:10], 1.0)  # the average of ones
    if rank == 0:
        with open(out, 'w') as f:
            json.dump(results, f)
    dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def communication(nets, ranks, repeats, workdir):
    import torch.multiprocessing as mp  # noqa: PLC0415

    sizes = {net: trainable_blobs(net) for net in nets}
    out = os.path.join(workdir, 'allreduce.json')
    mp.spawn(_allreduce_rank, args=(ranks, free_port(), sizes, repeats, out), nprocs=ranks)
    with open(out) as f:
        results = json.load(f)
    for net in nets:
        results[net]['trainable'] = sum(sizes[net])
    return results


# --- scaling ---------------------------------------------------------------------------


def scaling_setup(workdir, batch, crop=65):
    """A database of 16 records and a solver for a small conv net fed by HybridData."""
    import caffe  # noqa: PLC0415
    from caffe import layers as L  # noqa: PLC0415

    from data_prep.database import write_database  # noqa: PLC0415
    from data_prep.dataset import Record  # noqa: PLC0415
    from netgen import blocks as B  # noqa: PLC0415
    from netgen.config import MEAN_BGR  # noqa: PLC0415

    rng = np.random.default_rng(0)
    records = []
    for i in range(16):
        label = rng.integers(0, 3, (crop + 8, crop + 8)).astype(np.uint8)
        image = (60 * label[:, :, None] + rng.integers(0, 60, label.shape + (3,))).astype(np.uint8)
        records.append(Record(image, label, (1 + label + rng.random(label.shape)).astype(np.float32), ['r%d' % i]))
    source = write_database(os.path.join(workdir, 'db', 'train'), records, 'bench', 'train', ['a', 'b', 'c'])
    param = dict(
        source=str(source),
        batch_size=batch,
        crop_size=crop,
        label_size=(crop - 1) // 4 + 1,
        depth_sizes=[(crop - 1) // 4 + 1],
        mean=list(MEAN_BGR),
        seed=1,
        workers=1,
    )
    n = caffe.NetSpec()
    n.data, n.label, n.depth_gt = L.Python(
        ntop=3, python_param=dict(module='data_prep.layers', layer='HybridData', param_str=json.dumps(param))
    )
    top = B.conv(n, 'conv1', n.data, 32, 3, pad=1, wf=dict(type='xavier'))
    top = B.max_pool(n, 'pool1', top, 3, 2, pad=1)
    top = B.conv(n, 'conv2', top, 64, 3, pad=1, wf=dict(type='xavier'))
    top = B.max_pool(n, 'pool2', top, 3, 2, pad=1)
    top = B.conv(n, 'conv3', top, 64, 3, pad=1, wf=dict(type='xavier'))
    n.fc8 = L.Convolution(top, num_output=3, kernel_size=1, weight_filler=dict(type='xavier'))
    B.seg_loss(n, n.fc8, 1.0)
    n.depth_out = L.Convolution(top, num_output=1, kernel_size=1, weight_filler=dict(type='xavier'))
    B.depth_losses(n, 'depth', n.depth_out, n.depth_gt)
    net_path = os.path.join(workdir, 'bench_train.prototxt')
    with open(net_path, 'w') as f:
        f.write(str(n.to_proto()))
    solver = os.path.join(workdir, 'bench.prototxt')
    with open(solver, 'w') as f:
        f.write('train_net: "%s"\nbase_lr: 1e-6\nlr_policy: "fixed"\nmax_iter: 1\nmomentum: 0.9\n' % net_path)
        f.write('snapshot: 0\ndisplay: 0\nsnapshot_prefix: "unused"\n')
    return solver


def seconds_per_iteration(run_dir, warmup=5):
    times = [
        json.loads(line)['time'] for line in open(os.path.join(run_dir, 'train_log.jsonl')) if '"event": "iter"' in line
    ]
    steps = np.diff(times[warmup:])
    return float(np.median(steps))


def scaling(ranks, iters, batch, workdir):
    solver = scaling_setup(workdir, batch)
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS='1')
    common = ['-m', 'tools.train', '--quiet', '--no-plot', '--cpu', '--solver', solver, '--iters', str(iters)]
    common += ['--batch', str(batch)]
    rows = {}
    for count in (1, ranks):
        out = os.path.join(workdir, 'run%d' % count)
        launcher = [] if count == 1 else ['-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=%d' % count]
        subprocess.run(
            [sys.executable] + launcher + common + ['--out', out], env=env, cwd=REPO, check=True, capture_output=True
        )
        seconds = seconds_per_iteration(out)
        rows[count] = dict(seconds_per_iteration=seconds, images_per_s=count * batch / seconds)
    rows['efficiency'] = rows[ranks]['images_per_s'] / (ranks * rows[1]['images_per_s'])
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--ranks', type=int, default=2)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--iters', type=int, default=30)
    parser.add_argument('--batch', type=int, default=2, help='batch per rank of the scaling run')
    parser.add_argument('--nets', nargs='+', default=list(NETS), choices=NETS)
    parser.add_argument('--json', metavar='FILE')
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix='bench-distributed-') as workdir:
        result = dict(ranks=args.ranks, load=os.getloadavg())
        result['communication'] = communication(args.nets, args.ranks, args.repeats, workdir)
        result['scaling'] = scaling(args.ranks, args.iters, args.batch, workdir)
        result['load_after'] = os.getloadavg()
    print(
        '| net | trainable parameters (blobs) | all-reduce in place (s) | through a flat buffer (s) | wire only (s) |'
    )
    print('| --- | ---: | ---: | ---: | ---: |')
    for net, r in result['communication'].items():
        print(
            '| %s | %s (%d) | %.3f | %.3f | %.3f |'
            % (net, format(r['trainable'], ','), r['blobs'], r['in_place'], r['flat_buffer'], r['allreduce_only'])
        )
    s = result['scaling']
    print(
        'scaling: 1 process %.3f s/it, %d ranks %.3f s/it; efficiency %.2f'
        % (s[1]['seconds_per_iteration'], args.ranks, s[args.ranks]['seconds_per_iteration'], s['efficiency'])
    )
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main())
