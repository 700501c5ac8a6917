"""Training's faults (issue 12): every one ends in one clear message and a documented exit
status, and nothing a later run would trust is left half-written. Real processes and real kills
on the toy nets of tests/support/toy_scenes.py.

One test per case: a snapshot of NaN weights is never kept nor named the last good one; a torn
or poisoned newest snapshot is skipped by --resume auto and refused as --resume FILE; kill -9
while a snapshot is written leaves a resumable run (stale lock, the previous snapshot); a second
training into one --out is refused; resuming with other settings is refused or recorded; a
database of another dataset or class count is refused.
"""

import json
import os
import re
import signal
import subprocess
import time

import numpy as np
import pytest
from caffe.proto import caffe_pb2

from data_prep.database import write_database
from netgen.config import SEG_LOSS_WEIGHT
from tests.support import toy_scenes as T
from tests.support.colour_net import colour_database
from tools import train
from tools.core import EXIT_BAD_INPUT, EXIT_NONFINITE, EXIT_SIGINT, protos
from tools.training import snapshots
from tools.training.log import read_log

LR = 3e-5


def toy_solver(tmp_path, max_iter=12, **data):
    return T.write_solver(
        str(tmp_path / 'cfg'), 'hybrid', T.hybrid_net(SEG_LOSS_WEIGHT, **data), base_lr=LR, max_iter=max_iter
    )


def run_main(*argv):
    return train.main(['--quiet', '--no-plot'] + [str(a) for a in argv])


def train_process(*args):
    return subprocess.run(
        T.train_command(*[str(a) for a in args]),
        env=T.subprocess_env(),
        cwd=T.REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )


def start_training(*args):
    return subprocess.Popen(
        T.train_command(*[str(a) for a in args]), env=T.subprocess_env(), cwd=T.REPO, stderr=subprocess.PIPE, text=True
    )


def events(run, kind):
    return [r for r in read_log(run) if r['event'] == kind]


def last_iteration(run):
    return max(r['iter'] for r in events(run, 'iter'))


def wait_for(predicate, proc, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            raise AssertionError('the run ended early: %s' % proc.communicate()[1])
        time.sleep(0.02)
    raise AssertionError('timed out')


def snapshot_files(run):
    return sorted(f for f in os.listdir(run / 'snapshots') if not f.startswith('.'))


# --- NaN snapshots ------------------------------------------------------------------------


def test_a_non_finite_snapshot_is_never_kept(tmp_path):
    """NaN weights after step 4, a snapshot due at 4: it is not kept, the run stops (exit 3)
    naming iteration 2's snapshot, which holds finite values and resumes to the end."""
    solver, run = toy_solver(tmp_path), tmp_path / 'run'
    proc = train_process('--solver', solver, '--out', run, '--snapshot-every', 2, '--inject-nan-at', 4)
    assert proc.returncode == EXIT_NONFINITE, proc.stderr
    good = run / 'snapshots' / 'hybrid_iter_2.solverstate'
    assert 'the snapshot of iteration 4 is not kept: NaN or infinite weights in' in proc.stderr
    assert 'Last good snapshot: %s.' % good in proc.stderr
    assert snapshot_files(run) == ['hybrid_iter_2.caffemodel', 'hybrid_iter_2.solverstate']
    assert os.listdir(run / 'snapshots' / snapshots.PARTIAL) == []
    assert events(run, 'snapshot_rejected')[0]['iter'] == 4
    assert snapshots.problem(str(good)) is None
    assert run_main('--solver', solver, '--out', run, '--resume', good) == 0  # as the message advises
    assert last_iteration(run) == 12 and events(run, 'resume')[0]['iter'] == 2


def test_a_diverging_run_names_a_finite_snapshot(tmp_path):
    """A learning rate that diverges for real, a snapshot after every step: whatever
    iteration it stops at, every snapshot left is finite, the newest is the one named, and
    Caffe restores it (whether the momentum it holds diverges again is the run's business:
    exit 0 or 3, never an abort)."""
    solver, run = toy_solver(tmp_path, max_iter=30), tmp_path / 'run'
    proc = train_process('--solver', solver, '--out', run, '--snapshot-every', 1, '--base-lr', 50)
    assert proc.returncode == EXIT_NONFINITE, proc.stderr
    named = re.search(r'Last good snapshot: (\S+\.solverstate)\.', proc.stderr).group(1)
    states = [f for f in snapshot_files(run) if f.endswith('.solverstate')]
    assert states and all(snapshots.problem(str(run / 'snapshots' / f)) is None for f in states)
    assert os.path.basename(named) == max(states, key=snapshots.iteration)
    refused = train_process('--solver', solver, '--out', run, '--resume', named, '--base-lr', 1e-9)
    assert refused.returncode == EXIT_BAD_INPUT and '--base-lr was [50.0], now [1e-09]' in refused.stderr
    resumed = train_process('--solver', solver, '--out', run, '--resume', named, '--base-lr', 1e-9, '--allow-changes')
    assert resumed.returncode in (0, EXIT_NONFINITE), resumed.stderr
    assert events(run, 'resume')[-1]['iter'] == snapshots.iteration(named)


# --- torn and poisoned snapshots ----------------------------------------------------------


def stopped_run(tmp_path, *options):
    """A run stopped at iteration 6 with snapshots at 2, 4 and 6."""
    solver, run = toy_solver(tmp_path), tmp_path / 'run'
    assert run_main('--solver', solver, '--out', run, '--snapshot-every', 2, '--inject-stop-at', 6, *options) == 130
    return solver, run


def _rewrite(path, message, change):
    with open(path, 'rb') as f:
        message.ParseFromString(f.read())
    change(message)
    with open(path, 'wb') as f:
        f.write(message.SerializeToString())


def _nan_blob(blob):
    array = protos.blob_array(blob)
    array.flat[0] = np.nan
    protos.set_blob_data(blob, array)


def _cut_state(state):
    """A byte prefix of the file that ends at a field boundary: history blobs, no current_step."""
    del state.history[len(state.history) // 2 :]
    state.ClearField('current_step')


def spoil(state, fault):
    """Damage the snapshot `state` as `fault` says; returns the reason the driver must give."""
    model = snapshots.caffemodel_of(state)
    if fault == 'nan weights':
        _rewrite(model, caffe_pb2.NetParameter(), lambda net: _nan_blob(next(l for l in net.layer if l.blobs).blobs[0]))
        return 'NaN or infinite weights in %s (layers conv1)' % model
    if fault == 'nan history':
        _rewrite(state, caffe_pb2.SolverState(), lambda s: _nan_blob(s.history[0]))
        return 'NaN or infinite solver history (blobs 0)'
    if fault == 'truncated solverstate':
        os.truncate(state, os.path.getsize(state) // 2)
        return 'not a solverstate (truncated or damaged'
    if fault == 'solverstate cut at a field':
        _rewrite(state, caffe_pb2.SolverState(), _cut_state)
        return 'truncated solverstate (it ends before its last field)'
    if fault == 'truncated caffemodel':
        os.truncate(model, os.path.getsize(model) // 2)
        return '%s: not a caffemodel (truncated or damaged' % model
    os.remove(model)
    return 'its caffemodel %s is missing' % model


@pytest.mark.parametrize(
    'fault',
    [
        'nan weights',
        'nan history',
        'truncated solverstate',
        'solverstate cut at a field',
        'truncated caffemodel',
        'missing caffemodel',
    ],
)
def test_a_torn_or_poisoned_snapshot_is_skipped(tmp_path, fault):
    """The newest snapshot spoiled: `--resume` of it is one line and exit 2 (never Caffe's
    CHECK abort, 134); `--resume auto` says which one it skips and why, and continues from the
    one before, to the end."""
    solver, run = stopped_run(tmp_path)
    newest = str(run / 'snapshots' / 'hybrid_iter_6.solverstate')
    reason = spoil(newest, fault)
    named = train_process('--solver', solver, '--out', run, '--resume', newest)
    assert named.returncode == EXIT_BAD_INPUT, named.stderr
    lines = named.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: %s: cannot resume from it: ' % newest), lines
    assert reason in lines[0]
    auto = train_process('--solver', solver, '--out', run, '--resume', 'auto')
    assert auto.returncode == 0, auto.stderr
    assert 'skipping snapshot %s: ' % newest in auto.stdout and reason in auto.stdout
    assert events(run, 'resume')[-1]['iter'] == 4 and last_iteration(run) == 12
    assert events(run, 'skipped')[-1]['snapshots'][0]['state'] == newest


# --- a kill while a snapshot is written ---------------------------------------------------


@pytest.mark.parametrize('killed_at', [3, 6])
def test_a_kill_during_a_snapshot(tmp_path, killed_at):
    """kill -9 between the renames of a snapshot's caffemodel and its solverstate (the test
    hook holds the window open): no .solverstate without its caffemodel; without --resume the
    directory still says how to continue; --resume auto takes the lock the killed run held
    and continues from the last complete snapshot (or from the start when there is none)."""
    solver, run = toy_solver(tmp_path), tmp_path / 'run'
    proc = start_training('--solver', solver, '--out', run, '--snapshot-every', 3, '--inject-snapshot-pause', 1)
    torn = run / 'snapshots' / ('hybrid_iter_%d' % killed_at)
    wait_for(lambda: os.path.exists(str(torn) + '.caffemodel'), proc)
    proc.kill()
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert not os.path.exists(str(torn) + '.solverstate')
    assert snapshots.states(str(run)) == (
        [str(run / 'snapshots' / 'hybrid_iter_3.solverstate')] if killed_at == 6 else []
    )
    again = train_process('--solver', solver, '--out', run)
    assert again.returncode == EXIT_BAD_INPUT and 'already holds a run: pass --resume auto' in again.stderr
    resumed = train_process('--solver', solver, '--out', run, '--resume', 'auto')
    assert resumed.returncode == 0, resumed.stderr
    if killed_at == 6:
        assert events(run, 'resume')[-1]['iter'] == 3
    else:
        assert 'no snapshot to resume from: starting from iteration 0' not in resumed.stdout  # none was torn
        assert not events(run, 'resume')
    assert os.listdir(run / 'snapshots' / snapshots.PARTIAL) == []
    assert last_iteration(run) == 12 and os.path.isfile(run / 'final.caffemodel')
    assert all(snapshots.problem(p) is None for p in snapshots.states(str(run)))


@pytest.mark.parametrize(
    'signum, status, line',
    [(signal.SIGINT, 130, 'interrupted (SIGINT)'), (signal.SIGTERM, 143, 'terminated (SIGTERM)')],
)
def test_a_signal_while_caffe_loads(tmp_path, signum, status, line):
    """Ctrl-C or SIGTERM before training starts (Caffe still importing): one line, no
    traceback, nothing written."""
    solver, run = toy_solver(tmp_path), tmp_path / 'run'
    proc = start_training('--solver', solver, '--out', run)
    time.sleep(0.3)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == status and err.strip() == line, err
    assert not run.exists()


# --- two trainings, other settings ------------------------------------------------------


def test_a_second_training_into_the_same_out_is_refused(tmp_path):
    """A second tools.train into a running run's directory: refused at once (exit 2), naming
    the lock and the first process; it writes nothing there."""
    solver, run = toy_solver(tmp_path, max_iter=400, sleep=0.05), tmp_path / 'run'
    first = start_training('--solver', solver, '--out', run)
    log = run / 'train_log.jsonl'
    wait_for(lambda: log.exists() and '"iter"' in log.read_text(), first)
    kept = {name: (run / name).read_bytes() for name in ('solver.prototxt', 'train.prototxt', 'run.json')}
    for extra in ([], ['--resume', 'auto'], ['--batch', '4']):
        second = train_process('--solver', solver, '--out', run, *extra)
        assert second.returncode == EXIT_BAD_INPUT, second.stderr
        line = second.stderr.strip()
        assert line.startswith(
            'error: %s: the training run %s is being written by another process (pid %d'
            % (
                run / 'train.lock',
                run,
                first.pid,
            )
        ), line
        assert len(line.splitlines()) == 1
    assert {name: (run / name).read_bytes() for name in kept} == kept
    first.send_signal(signal.SIGINT)
    _, err = first.communicate(timeout=120)
    assert first.returncode == EXIT_SIGINT, err
    assert len(events(run, 'start')) == 1  # the second runs never wrote to the log


def test_resuming_with_other_settings(tmp_path, capsys):
    """Other settings on resume: refused listing each difference, nothing rewritten; allowed
    with --allow-changes, which run.json's history and the log record. Options not given on
    resume are the recorded ones."""
    solver, run = stopped_run(tmp_path, '--loss-weight', 'loss_seg=500', '--iters', 12)
    kept = {name: (run / name).read_bytes() for name in ('solver.prototxt', 'train.prototxt', 'run.json')}
    capsys.readouterr()
    assert run_main('--solver', solver, '--out', run, '--resume', 'auto', '--batch', 3, '--seed', 5) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert err.startswith('error: %s: resuming with other settings' % (run / 'run.json'))
    assert '--batch was null, now 3' in err and '--seed was 1, now 5' in err and len(err.splitlines()) == 1
    assert {name: (run / name).read_bytes() for name in kept} == kept
    assert len(events(run, 'start')) == 1
    assert run_main('--solver', solver, '--out', run, '--resume', 'auto', '--seed', 5, '--allow-changes') == 0
    record = json.loads((run / 'run.json').read_text())
    assert record['settings']['seed'] == 5 and record['history'][-1]['changes'] == {'--seed': [1, 5]}
    assert events(run, 'settings_changed')[-1]['changes'] == {'--seed': [1, 5]}
    assert run_main('--solver', solver, '--out', run, '--resume', 'auto', '--seed', 5) == 0  # now the recorded one
    assert len(json.loads((run / 'run.json').read_text())['history']) == 1
    assert 'loss_weight: 500' in (run / 'train.prototxt').read_text()  # not given on resume: the recorded one


# --- the wrong dataset ----------------------------------------------------------------------


def database_root(tmp_path, dataset, classes):
    root = tmp_path / ('%s_%d' % (dataset, classes))
    records = colour_database([(48, 64)]).records
    write_database(root / 'train', records, dataset, 'train', ['c%d' % i for i in range(classes)])
    return root


@pytest.mark.parametrize(
    'net, dataset, held, classes, fault',
    [
        ('deeplab_aspp', 'cityscapes', 'nyuv2', 40, "holds dataset 'nyuv2', but the net is trained for 'cityscapes'"),
        ('deeplab_aspp', 'nyuv2', 'nyuv2', 3, "has 3 classes (dataset 'nyuv2'), but the net"),
        ('depthnet', 'cityscapes', 'nyuv2', 40, "holds dataset 'nyuv2', but the net is trained for 'cityscapes'"),
    ],
)
def test_a_database_of_another_dataset_is_refused(tmp_path, capsys, net, dataset, held, classes, fault):
    root = database_root(tmp_path, held, classes)
    run = tmp_path / 'run'
    assert run_main('--net', net, '--dataset', dataset, '--data', root, '--out', run) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert err.startswith('error: database %s %s' % (root / 'train', fault)), err
    assert len(err.splitlines()) == 1
    assert not any(snapshots.any_snapshot(str(d)) for d in [run] + list(run.iterdir()) if d.is_dir())
