"""Data-parallel training (tools/training/distributed.py) with real processes on the CPU, gloo.

The net reads a small database through `HybridData`, so the ranks' slices of the global batch
are the real data layer's. Its loss terms are the real nets' (`loss_seg` SoftmaxWithLoss
normalised by the valid pixels, `loss_depth_abs` / `loss_depth_mvn` EuclideanLoss divided by
the batch): averaging the ranks' gradients equals the gradient of the global batch only when
every rank's normaliser is the same share of the global one, so the database has no ignored
label pixel and no crop is padded (docs/TRAINING.md). No dropout: each rank draws its own masks.
"""

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import caffe
import numpy as np
import pytest
from caffe import layers as L

from data_prep.batches import CropSampler, parse_param_str
from data_prep.database import open_database, write_database
from data_prep.dataset import Record
from netgen import blocks as B
from netgen.config import MEAN_BGR
from tests.support import toy_scenes as T
from tests.training.test_train_make import FAKE_PY, make
from tools.core import protos
from tools.training import distributed
from tools.training.log import read_log

CROP, LABEL, DEPTH = 17, 9, 9
ITERS = 4


def record(index, rng):
    height, width = rng.integers(CROP, CROP + 12, 2)  # never smaller than the crop: no padding
    label = rng.integers(0, 3, (height, width)).astype(np.uint8)  # no 255: every pixel counts
    image = (60 * label[:, :, None] + rng.integers(0, 60, (height, width, 3))).astype(np.uint8)
    depth = (1 + label + rng.random((height, width))).astype(np.float32)
    return Record(image, label, depth, ['record%d' % index])


@pytest.fixture(scope='module')
def database(tmp_path_factory):
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp('distributed') / 'train'
    return write_database(path, [record(i, rng) for i in range(7)], 'toy', 'train', ['a', 'b', 'c'])


def data_params(source, batch_size, **given):
    base = dict(
        source=str(source),
        batch_size=batch_size,
        crop_size=CROP,
        label_size=LABEL,
        depth_sizes=[DEPTH],
        mean=list(MEAN_BGR),
        seed=3,
        flip=True,
        workers=0,
    )
    return dict(base, **given)


def net_proto(source, batch_size):
    n = caffe.NetSpec()
    param = json.dumps(data_params(source, batch_size))
    n.data, n.label, n.depth_gt = L.Python(
        ntop=3, python_param=dict(module='data_prep.layers', layer='HybridData', param_str=param)
    )
    top = B.conv(n, 'conv1', n.data, 8, 3, pad=1, wf=dict(type='xavier'))
    top = B.max_pool(n, 'pool1', top, 3, 2, pad=1)
    n.fc8 = L.Convolution(top, num_output=3, kernel_size=1, weight_filler=dict(type='xavier'))
    B.seg_loss(n, n.fc8, 1.0)
    n.depth_out = L.Convolution(top, num_output=1, kernel_size=1, weight_filler=dict(type='xavier'))
    B.depth_losses(n, 'depth', n.depth_out, n.depth_gt)
    return n.to_proto()


def solver(tmp_path, database, batch_size=4, max_iter=ITERS):
    return T.write_solver(
        str(tmp_path / 'cfg'), 'toy', net_proto(database, batch_size), base_lr=1e-5, max_iter=max_iter
    )


def torchrun(ranks, *args, **popen):
    command = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=%d' % ranks]
    command += ['-m', 'tools.train', '--quiet', '--no-plot', '--cpu'] + [str(a) for a in args]
    env = {k: v for k, v in T.subprocess_env().items() if k not in distributed.ENVIRONMENT}
    env['OMP_NUM_THREADS'] = '1'
    return subprocess.Popen(
        command, env=env, cwd=T.REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen
    )


def finish(process, timeout=300):
    out, _ = process.communicate(timeout=timeout)
    return process.returncode, out


def single(*args):
    command = T.train_command('--cpu', *[str(a) for a in args])
    return subprocess.run(command, env=T.subprocess_env(), cwd=T.REPO, capture_output=True, text=True, timeout=300)


def weights(run_dir):
    return protos.layer_blobs(protos.read_caffemodel(os.path.join(run_dir, 'final.caffemodel')))


def assert_same_weights(a, b, rtol=1e-4, atol=1e-6):
    assert a.keys() == b.keys()
    for name in a:
        for x, y in zip(a[name], b[name]):
            np.testing.assert_allclose(x, y, rtol=rtol, atol=atol, err_msg=name)


def iter_rows(run_dir):
    return [r for r in read_log(str(run_dir)) if r['event'] == 'iter']


# --- the data layer's slices -----------------------------------------------------------


@pytest.mark.parametrize('train', [True, False])
def test_ranks_slice_the_global_batch(database, train):
    """Rank r of N at batch b serves slots r*b..(r+1)*b of the batch one process serves at
    batch N*b: the same records (the same permutation per epoch) and the same crops and flips."""
    db = open_database(str(database))
    one = CropSampler(db, parse_param_str(json.dumps(data_params(database, 6, train=train))))
    for world, size in ((2, 3), (3, 2)):
        ranks = [
            CropSampler(db, parse_param_str(json.dumps(data_params(database, size, train=train, rank=r, world=world))))
            for r in range(world)
        ]
        for number in (0, 1, 5):  # 7 records: batches cross epochs
            glued = [np.concatenate(tops) for tops in zip(*(rank.batch(number) for rank in ranks))]
            for a, b in zip(glued, one.batch(number)):
                np.testing.assert_array_equal(a, b)


def test_rank_must_be_below_world(database):
    with pytest.raises(ValueError, match='rank'):
        parse_param_str(json.dumps(data_params(database, 2, rank=2, world=2)))


def test_without_torchrun_one_process():
    assert not distributed.launched_by_torchrun({'RANK': '0'})
    assert distributed.setup(None, environ={}) is distributed.SINGLE
    assert distributed.SINGLE.base_lr(None, 0.1, 'linear') is None  # one process: nothing scaled


def test_learning_rate_rule_for_the_larger_batch():
    four = distributed.World(None, 0, 4, 0, 'gloo')
    assert four.base_lr(None, 0.1, 'none') is None  # the solver's rate untouched (the default)
    assert four.base_lr(2e-3, 0.1, 'none') == 2e-3
    assert four.base_lr(None, 0.1, 'linear') == pytest.approx(0.4)
    assert four.base_lr(2e-3, 0.1, 'sqrt') == pytest.approx(4e-3)


def _average_rank(rank, size, port, out):
    import torch.distributed as dist

    from bench.distributed import StandInBlob

    dist.init_process_group('gloo', init_method='tcp://127.0.0.1:%d' % port, rank=rank, world_size=size)
    world = distributed.World(dist, rank, size, rank, 'gloo')
    blobs = [StandInBlob(n) for n in (3, 700, 5, 1000)]
    for i, blob in enumerate(blobs):
        blob.diff[...] = np.arange(blob.count) * (rank + 1) + i
    averager = distributed.GradientAverager(world, blobs, bucket=256, direct=500)
    assert [b.count for b in averager.direct] == [700, 1000] and averager.count == 1708
    averager()
    if rank == 0:
        np.savez(out, *[b.diff for b in blobs])
    dist.destroy_process_group()


def test_gradient_averager_in_place_and_buffered(tmp_path):
    """Large blobs all-reduced in place in buckets, small ones through the flat buffer: every
    diff becomes the mean over the ranks."""
    import torch.multiprocessing as mp

    from bench.distributed import free_port

    out = str(tmp_path / 'diffs.npz')
    mp.spawn(_average_rank, args=(3, free_port(), out), nprocs=3)
    diffs = np.load(out)
    for i, n in enumerate((3, 700, 5, 1000)):
        np.testing.assert_allclose(diffs['arr_%d' % i], np.arange(n) * 2 + i, rtol=1e-6)


# --- real processes --------------------------------------------------------------------


@pytest.fixture(scope='module')
def two_ranks(database, tmp_path_factory):
    """An uninterrupted run of 2 ranks x batch 2."""
    tmp = tmp_path_factory.mktemp('two_ranks')
    code, out = finish(torchrun(2, '--solver', solver(tmp, database), '--batch', 2, '--out', tmp / 'run'))
    assert code == 0, out
    return tmp / 'run', out


def test_two_ranks_equal_one_process_at_twice_the_batch(database, two_ranks, tmp_path):
    run_dir, out = two_ranks
    result = single('--solver', solver(tmp_path, database), '--batch', 4, '--out', tmp_path / 'run')
    assert result.returncode == 0, result.stderr
    assert 'effective batch 4' in out
    assert_same_weights(weights(run_dir), weights(tmp_path / 'run'))
    half = single('--solver', solver(tmp_path, database), '--batch', 2, '--out', tmp_path / 'half')
    assert half.returncode == 0, half.stderr
    with pytest.raises(AssertionError):  # the tolerance does tell batches apart
        assert_same_weights(weights(run_dir), weights(tmp_path / 'half'))
    rows, one = iter_rows(run_dir), iter_rows(tmp_path / 'run')
    assert [r['iter'] for r in rows] == list(range(1, ITERS + 1))
    assert rows[0]['loss_seg'] != pytest.approx(one[0]['loss_seg'], rel=1e-6)  # rank 0 logs its half
    assert any(r['event'] == 'distributed' and r['effective_batch'] == 4 for r in read_log(str(run_dir)))


def test_run_directory_has_the_shape_of_a_single_run(two_ranks, database, tmp_path):
    run_dir, _ = two_ranks
    result = single('--solver', solver(tmp_path, database), '--batch', 4, '--out', tmp_path / 'run')
    assert result.returncode == 0, result.stderr
    names = lambda d: sorted(os.path.relpath(os.path.join(r, f), d) for r, _, fs in os.walk(d) for f in fs)  # noqa: E731
    assert names(run_dir) == names(tmp_path / 'run')


def test_resume_on_two_ranks_continues_exactly(database, two_ranks, tmp_path):
    """Stopped after iteration 2 (a snapshot), resumed with --resume auto: the weights of the
    uninterrupted run."""
    path = solver(tmp_path, database)
    code, out = finish(torchrun(2, '--solver', path, '--batch', 2, '--out', tmp_path / 'run', '--inject-stop-at', 2))
    assert code != 0 and 'stopped by SIGINT at iteration 2' in out, out
    code, out = finish(torchrun(2, '--solver', path, '--batch', 2, '--out', tmp_path / 'run', '--resume', 'auto'))
    assert code == 0, out
    assert_same_weights(weights(tmp_path / 'run'), weights(two_ranks[0]), rtol=0, atol=0)
    assert [r['iter'] for r in iter_rows(tmp_path / 'run')] == [1, 2, 3, 4]


def rank_pids(process, count, timeout=120):
    """{rank: pid} of the workers torchrun started."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = {}
        for pid in os.listdir('/proc'):
            if not pid.isdigit():
                continue
            try:
                with open('/proc/%s/stat' % pid) as f:
                    parent = int(f.read().rsplit(')', 1)[1].split()[1])
                if parent != process.pid:
                    continue
                with open('/proc/%s/environ' % pid, 'rb') as f:
                    env = dict(v.split(b'=', 1) for v in f.read().split(b'\0') if b'=' in v)
            except OSError:
                continue
            if b'RANK' in env:
                found[int(env[b'RANK'])] = int(pid)
        if len(found) == count:
            return found
        time.sleep(0.2)
    raise AssertionError('torchrun did not start %d ranks' % count)


def wait_for_rows(run_dir, count, timeout=180):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if os.path.isfile(os.path.join(run_dir, 'train_log.jsonl')) and len(iter_rows(run_dir)) >= count:
            return
        time.sleep(0.2)
    raise AssertionError('no %d iterations logged' % count)


def test_sigint_on_one_rank_stops_all_with_a_snapshot(database, tmp_path):
    path = solver(tmp_path, database, max_iter=100000)
    process = torchrun(2, '--solver', path, '--batch', 2, '--out', tmp_path / 'run')
    pids = rank_pids(process, 2)
    wait_for_rows(tmp_path / 'run', 3)
    os.kill(pids[1], signal.SIGINT)
    code, out = finish(process, timeout=120)
    assert code != 0
    stop = [r for r in read_log(str(tmp_path / 'run')) if r['event'] == 'stop']
    assert stop and stop[0]['reason'] == 'SIGINT', out
    assert os.path.isfile(stop[0]['state']) and '_iter_%d.' % stop[0]['iter'] in stop[0]['state']


def test_a_killed_rank_ends_the_job_with_a_message(database, tmp_path):
    path = solver(tmp_path, database, max_iter=100000)
    process = torchrun(2, '--solver', path, '--batch', 2, '--out', tmp_path / 'run', '--collective-timeout', 60)
    pids = rank_pids(process, 2)
    wait_for_rows(tmp_path / 'run', 3)
    os.kill(pids[1], signal.SIGKILL)
    code, out = finish(process, timeout=120)  # no hang
    for leftover in glob.glob(os.path.join(tempfile.gettempdir(), 'hybridnet-rank1-*')):  # the killed rank's
        if str(tmp_path) in open(os.path.join(leftover, 'train_log.jsonl')).read():
            shutil.rmtree(leftover)
    assert code != 0
    assert 'error: rank 0 of 2' in out or 'exitcode  : -9' in out, out


# --- make NET-DATASET GPUS=N / CPU_RANKS=N -----------------------------------------------


@pytest.mark.parametrize(
    'variables, device',
    [(['GPUS=4'], '--gpu 0 --iters 3'), (['CPU_RANKS=2', 'LR_SCALING=linear'], '--cpu --iters 3 --lr-scaling linear')],
)
def test_make_launches_ranks_through_torchrun(tmp_path, variables, device):
    shutil.copy(os.path.join(T.REPO, 'Makefile'), tmp_path / 'Makefile')
    (tmp_path / 'fakepy').write_text(FAKE_PY)
    (tmp_path / 'fakepy').chmod(0o755)
    (tmp_path / 'data' / 'nyuv2' / 'train').mkdir(parents=True)
    (tmp_path / 'data' / 'nyuv2' / 'train' / 'manifest.json').write_text('{}')
    proc, commands = make(tmp_path, 'depthnet-nyuv2', 'ITERS=3', *variables)
    assert proc.returncode == 0, proc.stderr
    ranks = variables[0].split('=')[1]
    assert (
        commands[1].split()
        == (
            '-m torch.distributed.run --standalone --nproc_per_node=%s -m tools.train --net depthnet --dataset nyuv2 '
            '--resume auto --out runs/depthnet_nyuv2 %s' % (ranks, device)
        ).split()
    )


# --- a real generated net --------------------------------------------------------------


@pytest.mark.slow
def test_generated_depthnet_gradient_stage_on_a_sample_database(tmp_path):
    """The generated DepthNet gradient stage (a real net, 2.3 M parameters) on 2 CPU ranks for 2
    iterations on a sample NYUv2 database: trains, and writes the run directory of one process."""
    from data_prep import convert
    from data_prep.sample import write_sample

    write_sample('nyuv2', str(tmp_path / 'raw'), 2, 0)
    convert.convert_split('nyuv2', str(tmp_path / 'raw'), str(tmp_path / 'db'), 'train', workers=1)
    solver_path = os.path.join(T.REPO, 'solvers', 'depthnet_gradient_nyuv2.prototxt')
    args = ['--solver', solver_path, '--data', tmp_path / 'db', '--iters', 2, '--batch', 1]
    code, out = finish(torchrun(2, *args, '--out', tmp_path / 'ranks'), timeout=600)
    assert code == 0, out
    assert 'effective batch 2' in out
    result = single(*args, '--out', tmp_path / 'one')
    assert result.returncode == 0, result.stderr
    names = lambda d: sorted(os.path.relpath(os.path.join(r, f), d) for r, _, fs in os.walk(d) for f in fs)  # noqa: E731
    assert names(tmp_path / 'ranks') == names(tmp_path / 'one')
    assert [r['iter'] for r in iter_rows(tmp_path / 'ranks')] == [1, 2]
