"""Caffe's command-line tool driven from Python, for the benchmarks and GPU checks.

Needs no pycaffe (only `caffe.proto.caffe_pb2`, i.e. protobuf): the device machine of
`bench/device_check.sh` runs another Python than the one pycaffe is built for, so the
Caffe side there goes through the `caffe` binary alone.

- `gpu_present()`: (bool, reason) whether an NVIDIA GPU and driver answer.
- `caffe_train_timing(caffe, net, iterations, gpu=None, tf32=False)`: milliseconds per
  training iteration (forward, backward, SGD update) of `caffe train`.
- `caffe_time(caffe, model, iterations, gpu=None, tf32=False)`: `caffe time` per-layer
  forward+backward milliseconds. Stock `caffe time` calls Backward on every layer, so it
  aborts on nets with a Threshold layer (the depth nets' valid-pixel masks): use
  `caffe_train_timing` for those.
- `caffe_train_losses(caffe, solver, gpu=None, tf32=False)`: the losses `caffe train` logs.
- `dummy_data_net(net_param, seed)`: a train net whose Input data layer is replaced by a
  DummyData layer with random image / label / depth fillers (a training iteration without
  a database, reproducible from the solver's random_seed).
"""

import os
import re
import shutil
import subprocess
import time

TF32_LOG = 'CUBLAS_TF32_TENSOR_OP_MATH'  # what the TF32 patch logs when it switches on


class CaffeError(RuntimeError):
    """`caffe` exited non-zero; the message ends with its last log lines."""


def gpu_present():
    """(True, name) when nvidia-smi lists a GPU, else (False, why not)."""
    smi = shutil.which('nvidia-smi')
    if smi is None:
        return False, 'no nvidia-smi on PATH (no NVIDIA driver on this machine)'
    try:
        out = subprocess.run([smi, '-L'], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, 'nvidia-smi -L failed: %s' % e
    gpus = [l for l in out.stdout.splitlines() if l.startswith('GPU ')]
    if out.returncode != 0 or not gpus:
        return False, 'nvidia-smi -L lists no GPU (%s)' % (out.stderr.strip() or out.stdout.strip())
    return True, gpus[0]


def _run(cmd, tf32=False, timeout=3600):
    env = dict(os.environ, GLOG_logtostderr='1', GLOG_minloglevel='0')  # the logs are parsed
    env.pop('CAFFE_TF32', None)
    if tf32:
        env['CAFFE_TF32'] = '1'
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    log = p.stdout + p.stderr
    if p.returncode != 0:
        tail = '\n'.join(log.splitlines()[-25:])
        raise CaffeError('%s exited %d after %.0f s:\n%s' % (' '.join(cmd), p.returncode, time.time() - t0, tail))
    return log


def _gpu_args(gpu):
    return [] if gpu is None else ['-gpu', str(gpu)]


_ITER_MS = re.compile(r'Iteration: (\d+) forward-backward time: ([0-9.e+-]+) ms')
_AVG_MS = re.compile(r'Average Forward-Backward: ([0-9.e+-]+) ms')


def caffe_time(caffe, model, iterations, gpu=None, tf32=False, timeout=3600):
    """`caffe time -model M -iterations N [-gpu G]` (TRAIN phase; one untimed forward
    and backward first). dict(per_iter_ms=[...], mean_ms, tf32_applied, log)."""
    log = _run(
        [caffe, 'time', '-model', model, '-iterations', str(iterations)] + _gpu_args(gpu), tf32=tf32, timeout=timeout
    )
    per_iter = [float(ms) for _, ms in _ITER_MS.findall(log)]
    avg = _AVG_MS.search(log)
    if not per_iter or avg is None:
        raise CaffeError('no timings in the output of caffe time:\n' + log[-2000:])
    return dict(per_iter_ms=per_iter, mean_ms=float(avg.group(1)), tf32_applied=TF32_LOG in log, log=log)


_STAMP_ITER = re.compile(r'^[IWEF]\d{8} (\d\d):(\d\d):(\d\d\.\d+) .*\] Iteration (\d+)(?: \([^)]*\))?, loss = ', re.M)


def caffe_train_timing(caffe, net, iterations, gpu=None, tf32=False, workdir=None, weight_decay=0.005, timeout=3600):
    """Seconds per training iteration as `caffe train` runs them: forward, backward and
    the SGD update (momentum 0.9), `iterations` + 1 iterations with the loss logged at
    each; the time between consecutive log lines is one iteration (update of k, forward
    and backward of k + 1), so iteration 0 (first allocations) is not counted. base_lr is
    tiny (1e-12) so random data cannot diverge into NaN/denormal arithmetic.
    dict(per_iter_ms=[...], tf32_applied, log)."""
    import tempfile  # noqa: PLC0415

    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        solver = os.path.join(tmp, 'solver.prototxt')
        with open(solver, 'w') as f:
            f.write(
                parity_solver(
                    os.path.abspath(net),
                    os.path.join(tmp, 'snap'),
                    base_lr=1e-12,
                    iterations=iterations + 1,
                    gpu=gpu is not None,
                    weight_decay=weight_decay,
                )
            )
        log = _run([caffe, 'train', '-solver', solver] + _gpu_args(gpu), tf32=tf32, timeout=timeout)
    # Solve() logs one more "Iteration N+1, loss" after a final forward-only pass: skip it.
    stamps = {}
    for h, m, s, it in _STAMP_ITER.findall(log):
        if int(it) <= iterations:
            stamps[int(it)] = int(h) * 3600 + int(m) * 60 + float(s)
    if len(stamps) < iterations + 1:
        raise CaffeError(
            'expected %d "Iteration N, loss" lines, found %d:\n%s' % (iterations + 1, len(stamps), log[-2000:])
        )
    its = sorted(stamps)
    per_iter = [((stamps[b] - stamps[a]) % 86400) * 1000.0 for a, b in zip(its, its[1:])]
    return dict(per_iter_ms=per_iter, tf32_applied=TF32_LOG in log, log=log)


_LOSS = re.compile(r'Iteration (\d+)(?: \([^)]*\))?, loss = ([-0-9.e+naif]+)')


def caffe_train_losses(caffe, solver, gpu=None, tf32=False, timeout=1800):
    """`caffe train -solver S [-gpu G]`: {iteration: loss} as logged (display: 1 logs
    every iteration), plus the log. Returns (losses, tf32_applied, log)."""
    log = _run([caffe, 'train', '-solver', solver] + _gpu_args(gpu), tf32=tf32, timeout=timeout)
    losses = {int(i): float(v) for i, v in _LOSS.findall(log)}
    if not losses:
        raise CaffeError('no "Iteration N, loss = x" lines in the output:\n' + log[-2000:])
    return losses, TF32_LOG in log, log


def dummy_data_net(net_param, data_std=50.0, depth_range=(1.0, 50.0)):
    """Copy of a train NetParameter whose Input layers become DummyData layers filled
    every iteration: `data` Gaussian (std `data_std`, an image minus its mean), `label`
    uniform in [0, K) (Caffe casts labels to int: valid classes, K from the net's
    SoftmaxWithLoss bottom), depth tops uniform in `depth_range` metres. Fillers draw from
    Caffe's CPU RNG, so the solver's random_seed makes the batches reproducible."""
    from caffe.proto import caffe_pb2  # noqa: PLC0415

    net = caffe_pb2.NetParameter()
    net.CopyFrom(net_param)
    num_classes = _num_classes(net)
    for layer in net.layer:
        if layer.type != 'Input':
            continue
        shapes = list(layer.input_param.shape)
        layer.type = 'DummyData'
        layer.ClearField('input_param')
        for top, shape in zip(layer.top, shapes):
            layer.dummy_data_param.shape.add().CopyFrom(shape)
            f = layer.dummy_data_param.data_filler.add()
            if top == 'data':
                f.type, f.std = 'gaussian', data_std
            elif top == 'label':
                if num_classes is None:
                    raise ValueError("a 'label' top but no Convolution feeding SoftmaxWithLoss")
                f.type, f.min, f.max = 'uniform', 0.0, num_classes - 1e-3
            else:
                f.type, f.min, f.max = 'uniform', depth_range[0], depth_range[1]
    return net


def _num_classes(net):
    """Outputs of the Convolution whose top feeds the SoftmaxWithLoss (fc8's sum)."""
    producers = {}
    for layer in net.layer:
        for top in layer.top:
            producers[top] = layer
    for layer in net.layer:
        if layer.type == 'SoftmaxWithLoss':
            seen, todo = set(), [layer.bottom[0]]
            while todo:
                blob = todo.pop()
                src = producers.get(blob)
                if src is None or id(src) in seen:
                    continue
                seen.add(id(src))
                if src.type == 'Convolution':
                    return src.convolution_param.num_output
                todo.extend(src.bottom)
    return None


def parity_solver(net_path, snapshot_prefix, base_lr=2.5e-6, iterations=2, seed=1, gpu=True, weight_decay=0.005):
    """SolverParameter text: `iterations` SGD steps of the net, loss logged every step,
    no snapshot."""
    return (
        'net: "%s"\nbase_lr: %g\nlr_policy: "fixed"\nmomentum: 0.9\n'
        'weight_decay: %g\nmax_iter: %d\ndisplay: 1\naverage_loss: 1\n'
        'random_seed: %d\nsnapshot: 0\nsnapshot_after_train: false\n'
        'snapshot_prefix: "%s"\nsolver_mode: %s\n'
        % (net_path, base_lr, weight_decay, iterations, seed, snapshot_prefix, 'GPU' if gpu else 'CPU')
    )
