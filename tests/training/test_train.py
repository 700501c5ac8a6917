"""tools.train, tools.solver_config, tools.train_log, tools.plot_log on small nets (CPU).

The nets and the toy data layer are in tests/support/toy_scenes.py; they use netgen's loss blocks,
so the loss terms are those of the real nets (`loss_seg` with A2's weight 1000,
`loss_depth_abs`, `loss_depth_mvn`, DepthNet's per-stage terms).
"""

import json
import os
import signal
import subprocess
import sys
import time

import caffe
import numpy as np
import pytest

from netgen.config import SEG_LOSS_WEIGHT
from tests.support import toy_scenes as T
from tools import plot_log, train
from tools.core import EXIT_NONFINITE, ToolError
from tools.training import run as training_run
from tools.training import solver_config
from tools.training.log import read_log

HYBRID_LR = 3e-5  # with loss_seg weighted 1000, as in A1/A2


def iter_rows(run_dir, stage=None):
    rows = [r for r in read_log(run_dir) if r['event'] == 'iter']
    return [r for r in rows if stage is None or r['stage'] == stage]


def run_main(*argv):
    return train.main(['--quiet', '--no-plot'] + [str(a) for a in argv])


def hybrid_solver(tmp_path, name='hybrid', max_iter=40, **data):
    return T.write_solver(
        str(tmp_path / 'cfg'), name, T.hybrid_net(SEG_LOSS_WEIGHT, **data), base_lr=HYBRID_LR, max_iter=max_iter
    )


# --- solver configuration --------------------------------------------------------------


def test_learning_rate_follows_caffe_policies():
    s = solver_config.caffe_pb2.SolverParameter(base_lr=0.01, max_iter=100, power=0.9, gamma=0.5, stepsize=30)
    s.lr_policy = 'poly'
    assert solver_config.learning_rate(s, 0) == pytest.approx(0.01)
    assert solver_config.learning_rate(s, 50) == pytest.approx(0.01 * 0.5**0.9)
    s.lr_policy = 'step'
    assert solver_config.learning_rate(s, 65) == pytest.approx(0.01 * 0.25)
    s.lr_policy = 'fixed'
    assert solver_config.learning_rate(s, 99) == pytest.approx(0.01)
    s.lr_policy = 'cosine'
    with pytest.raises(ToolError, match='cosine'):
        solver_config.learning_rate(s, 1)


def test_run_copy_of_generated_solver(tmp_path):
    """The copy of the generated A2 solver: absolute nets in the run directory, the database
    given by --data, the run's snapshot prefix, overrides; the original files untouched."""
    data = tmp_path / 'db'
    for split in ('train', 'val'):
        (data / split).mkdir(parents=True)
        (data / split / 'manifest.json').write_text('{}')
    solver = os.path.join(T.REPO, 'solvers', 'a2_cityscapes.prototxt')
    before = open(solver).read()
    path, param, sources = solver_config.write_run_copy(
        solver,
        str(tmp_path / 'run'),
        'a2',
        base_dir=T.REPO,
        max_iter=12,
        seed=7,
        base_lr=1e-4,
        batch_size=1,
        data_root=str(data),
        keep_test_net=True,
    )
    assert open(solver).read() == before
    copy = solver_config.read_solver(path)
    assert copy.train_net == str(tmp_path / 'run' / 'train.prototxt')
    assert list(copy.test_net) == [str(tmp_path / 'run' / 'test.prototxt')]
    assert (copy.max_iter, copy.random_seed) == (12, 7) and copy.base_lr == pytest.approx(1e-4)
    assert copy.snapshot_prefix == str(tmp_path / 'run' / 'snapshots' / '.partial' / 'a2')  # renamed when good
    assert (copy.snapshot, copy.test_interval, copy.lr_policy) == (0, solver_config.NEVER, 'poly')
    assert sources == [str(data / 'train'), str(data / 'val')]
    net = solver_config.read_net(copy.train_net)
    params = json.loads(next(l for l in net.layer if l.type == 'Python').python_param.param_str)
    assert params['source'] == str(data / 'train') and params['batch_size'] == 1
    assert params['crop_size'] == 321 and params['label_size'] == 41  # the rest as generated


def test_msra_fillers_of_a_run_from_scratch():
    """--filler msra on the generated nets: MSRA after which a ReLU comes, scaled by the pixel
    std where the layer reads the image, a small Gaussian for the output layers; fixed and
    frozen layers keep their fillers."""
    a2 = solver_config.read_net(os.path.join(T.REPO, 'prototxt', 'a2_cityscapes', 'train.prototxt'))
    fixed_before = str(next(l for l in a2.layer if l.name == 'fixed_up2_refine'))
    changed = solver_config.replace_fillers(a2, 'msra')
    assert changed['conv3_2'] == ('msra', None) and changed['global_fc6'] == ('msra', None)
    assert changed['conv1_1'][0] == 'gaussian'
    assert changed['conv1_1'][1] == pytest.approx((2 / 27) ** 0.5 / solver_config.PIXEL_STD)
    assert changed['refine_conv1'][1] == pytest.approx((2 / 363) ** 0.5 / solver_config.PIXEL_STD)
    for output in ('fc8_1', 'fc8_4', 'global_fc7'):
        assert changed[output] == ('gaussian', pytest.approx(solver_config.OUTPUT_STD))
    assert 'fixed_up2_refine' not in changed
    assert str(next(l for l in a2.layer if l.name == 'fixed_up2_refine')) == fixed_before
    layer = next(l for l in a2.layer if l.name == 'conv4_1')
    assert layer.convolution_param.weight_filler.type == 'msra'
    refine = solver_config.read_net(os.path.join(T.REPO, 'prototxt', 'depthnet_refine_cityscapes', 'train.prototxt'))
    changed = solver_config.replace_fillers(refine, 'msra')
    assert not any(n.startswith(('global_', 'grad_')) for n in changed)  # frozen
    assert 'refine_conv2' in changed


def test_run_copy_names_a_missing_database(tmp_path):
    solver = os.path.join(T.REPO, 'solvers', 'a2_cityscapes.prototxt')
    with pytest.raises(ToolError, match=r'database .*nowhere/train is missing'):
        solver_config.write_run_copy(
            solver, str(tmp_path / 'run'), 'a2', base_dir=T.REPO, data_root=str(tmp_path / 'nowhere')
        )


def test_bad_solver_file_is_named(tmp_path):
    bad = tmp_path / 'bad.prototxt'
    bad.write_text('base_lr: "fast"\n')
    assert run_main('--solver', bad, '--out', tmp_path / 'run') == 2
    with pytest.raises(ToolError, match='bad.prototxt'):
        solver_config.read_solver(str(bad))


# --- learning ---------------------------------------------------------------------------


@pytest.mark.parametrize('seed', [1, 2, 3])
def test_a_few_dozen_iterations_lower_every_loss_term(tmp_path, seed):
    """40 steps of the miniature hybrid net: the mean of the last 8 values of every term is
    well below the mean of the first 8, for three seeds (weights, dropout and data)."""
    solver = hybrid_solver(tmp_path, seed=seed)
    assert run_main('--solver', solver, '--out', tmp_path / 'run', '--seed', seed) == 0
    rows = iter_rows(tmp_path / 'run')
    assert [r['iter'] for r in rows] == list(range(1, 41))
    for term in ('loss_seg', 'loss_depth_abs', 'loss_depth_mvn', 'loss'):
        values = [r[term] for r in rows]
        assert np.mean(values[-8:]) < 0.7 * np.mean(values[:8]), (term, values)
    lr = [r['lr'] for r in rows]
    assert lr[0] == pytest.approx(HYBRID_LR) and lr[-1] == pytest.approx(HYBRID_LR * (1 / 40) ** 0.9)
    weighted = SEG_LOSS_WEIGHT * rows[0]['loss_seg'] + rows[0]['loss_depth_abs'] / 100 + rows[0]['loss_depth_mvn']
    assert rows[0]['loss'] == pytest.approx(weighted, rel=1e-5)
    assert all(r['images_per_s'] > 0 for r in rows)


def test_resume_gives_the_losses_of_an_uninterrupted_run(tmp_path):
    """20 steps at once vs. 20 steps stopped at 13 and resumed from the snapshot of 10 (the
    log then holds rows 11-13 twice): the same losses, bit for bit."""
    solver = hybrid_solver(tmp_path, max_iter=20)
    assert run_main('--solver', solver, '--out', tmp_path / 'whole') == 0
    full = iter_rows(tmp_path / 'whole')
    assert (
        run_main('--solver', solver, '--out', tmp_path / 'cut', '--snapshot-every', 10, '--inject-stop-at', 13) == 130
    )
    assert len(iter_rows(tmp_path / 'cut')) == 13
    state = tmp_path / 'cut' / 'snapshots' / 'hybrid_iter_10.solverstate'
    assert run_main('--solver', solver, '--out', tmp_path / 'cut', '--resume', state) == 0
    resumed = iter_rows(tmp_path / 'cut')
    keys = ('iter', 'lr', 'loss_seg', 'loss_depth_abs', 'loss_depth_mvn')
    assert [[r[k] for k in keys] for r in resumed] == [[r[k] for k in keys] for r in full]
    resume = next(r for r in read_log(tmp_path / 'cut') if r['event'] == 'resume')
    assert resume['data'] == {'data': 'replay'} and resume['iter'] == 10


def test_resume_uses_a_data_layer_skip_when_offered(tmp_path):
    solver = hybrid_solver(tmp_path, max_iter=8, layer='SkippingToyScenes')
    assert run_main('--solver', solver, '--out', tmp_path / 'whole') == 0
    assert (
        run_main(
            '--solver', solver, '--out', tmp_path / 'cut', '--iters', 8, '--snapshot-every', 5, '--inject-stop-at', 5
        )
        == 130
    )
    assert run_main('--solver', solver, '--out', tmp_path / 'cut', '--resume', 'auto') == 0
    a, b = iter_rows(tmp_path / 'whole'), iter_rows(tmp_path / 'cut')
    assert [r['loss_seg'] for r in a] == [r['loss_seg'] for r in b]
    resume = next(r for r in read_log(tmp_path / 'cut') if r['event'] == 'resume')
    assert resume['data'] == {'data': 'skip_batches'} and resume['iter'] == 5


def test_an_existing_run_needs_resume(tmp_path, capsys):
    solver = hybrid_solver(tmp_path, max_iter=3)
    assert run_main('--solver', solver, '--out', tmp_path / 'run') == 0
    assert run_main('--solver', solver, '--out', tmp_path / 'run') == 2
    assert 'already holds a run: pass --resume auto' in capsys.readouterr().err
    assert run_main('--solver', solver, '--out', tmp_path / 'run', '--resume', 'auto') == 0
    assert len(iter_rows(tmp_path / 'run')) == 3  # done: nothing more to train
    final = tmp_path / 'run' / 'final.caffemodel'
    assert run_main('--solver', solver, '--out', tmp_path / 'run', '--resume', final) == 2
    assert 'give a .solverstate (or auto)' in capsys.readouterr().err
    assert run_main('--solver', solver, '--out', tmp_path / 'run', '--resume', tmp_path / 'x.solverstate') == 2
    assert 'x.solverstate: no such file' in capsys.readouterr().err


# --- signals and NaN (in a subprocess: they end the process) ---------------------------


def wait_for_iterations(log, count, proc, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError('the run ended early: %s' % proc.communicate()[1])
        if os.path.exists(log) and sum('"iter"' in line for line in open(log)) >= count:
            return
        time.sleep(0.05)
    raise AssertionError('no %d iterations within %d s' % (count, timeout))


def test_sigint_writes_a_usable_snapshot(tmp_path):
    """SIGINT mid-run: exit 130 after a snapshot at the iteration reached; resuming from it
    finishes with the losses of an uninterrupted run."""
    solver = hybrid_solver(tmp_path, max_iter=60, sleep=0.05)
    run = tmp_path / 'run'
    proc = subprocess.Popen(
        T.train_command('--solver', solver, '--out', str(run)),
        env=T.subprocess_env(),
        cwd=T.REPO,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for_iterations(str(run / 'train_log.jsonl'), 5, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    stop = [r for r in read_log(run) if r['event'] == 'stop'][-1]
    assert stop['reason'] == 'SIGINT' and 'stopped by SIGINT' in err
    stopped_at = stop['iter']
    assert 5 <= stopped_at < 60
    assert stop['state'] == str(run / 'snapshots' / ('hybrid_iter_%d.solverstate' % stopped_at))
    assert os.path.isfile(stop['state'])
    assert os.path.isfile(stop['state'].replace('.solverstate', '.caffemodel'))
    assert run_main('--solver', solver, '--out', run, '--resume', stop['state']) == 0
    assert run_main('--solver', solver, '--out', tmp_path / 'whole') == 0
    keys = ('iter', 'loss_seg', 'loss_depth_abs', 'loss_depth_mvn')
    assert [[r[k] for k in keys] for r in iter_rows(run)] == [
        [r[k] for k in keys] for r in iter_rows(tmp_path / 'whole')
    ]


def check_nonfinite_stop(tmp_path, proc, run, kept_iter):
    assert proc.returncode == EXIT_NONFINITE, proc.stderr  # not 134: no double free
    assert 'not finite' in proc.stderr and 'Stopped before Caffe runs another forward' in proc.stderr
    kept = str(run / 'snapshots' / ('hybrid_iter_%d.solverstate' % kept_iter))
    assert 'Last good snapshot: %s' % kept in proc.stderr
    states = sorted(os.listdir(run / 'snapshots'))
    assert states[-1] == 'hybrid_iter_%d.solverstate' % kept_iter, states
    weights = caffe.Net(str(run / 'train.prototxt'), kept.replace('.solverstate', '.caffemodel'), caffe.TEST)
    assert all(np.isfinite(b.data).all() for blobs in weights.params.values() for b in blobs)
    stop = read_log(run)[-1]
    assert stop['event'] == 'stop' and stop['reason'] == 'nonfinite' and stop['state'] == kept


def test_nan_weights_stop_the_run_before_the_next_forward(tmp_path):
    """A NaN written into the weights after step 6 (a diverged update): the weight check
    stops before step 7's forward pass; the snapshot of iteration 4 is kept."""
    solver = hybrid_solver(tmp_path, max_iter=20)
    run = tmp_path / 'run'
    proc = subprocess.run(
        T.train_command('--solver', solver, '--out', str(run), '--snapshot-every', '4', '--inject-nan-at', '6'),
        env=T.subprocess_env(),
        cwd=T.REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    check_nonfinite_stop(tmp_path, proc, run, 4)
    assert 'weights of conv1 are not finite at iteration 6' in proc.stderr
    assert max(r['iter'] for r in iter_rows(run)) == 6


def test_a_nan_loss_stops_the_run_and_exits_cleanly(tmp_path):
    """A huge learning rate without the weight check: the loss itself turns NaN/inf after
    a max pooling saw it; the run stops with the message and exits without a double free."""
    solver = T.write_solver(str(tmp_path / 'cfg'), 'hybrid', T.hybrid_net(SEG_LOSS_WEIGHT), base_lr=50.0, max_iter=40)
    run = tmp_path / 'run'
    proc = subprocess.run(
        T.train_command('--solver', solver, '--out', str(run), '--snapshot-every', '1', '--check-weights-every', '0'),
        env=T.subprocess_env(),
        cwd=T.REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    last = max(r['iter'] for r in iter_rows(run))
    check_nonfinite_stop(tmp_path, proc, run, last)
    assert 'is not finite at iteration %d' % (last + 1) in proc.stderr


# --- DepthNet's stages -----------------------------------------------------------------


def test_depthnet_stages_chain(tmp_path):
    """global, then gradient, then refine starting from both: the refine stage's frozen
    layers equal the earlier stages' final weights exactly, after training."""
    cfg = str(tmp_path / 'cfg')
    stages = [
        training_run.Stage(
            'depthnet_global', T.write_solver(cfg, 'g', T.global_stage_net(), base_lr=1e-3, max_iter=6), ()
        ),
        training_run.Stage(
            'depthnet_gradient', T.write_solver(cfg, 'd', T.gradient_stage_net(), base_lr=1e-3, max_iter=6), ()
        ),
        training_run.Stage(
            'depthnet_refine',
            T.write_solver(cfg, 'r', T.refine_stage_net(), base_lr=1e-3, max_iter=6),
            training_run.STAGE_INPUTS['depthnet_refine'],
        ),
    ]
    run = tmp_path / 'run'
    args = train.parse_args(['--net', 'depthnet', '--dataset', 'cityscapes', '--out', str(run), '--quiet', '--no-plot'])
    final = training_run.train(args, stages=stages)
    assert final == str(run / 'final.caffemodel')
    rows = iter_rows(run)
    assert [r['stage'] for r in rows] == [s.name for s in stages for _ in range(6)]
    assert set(rows[0]) >= {'loss_global_abs', 'loss_global_mvn'}
    assert 'loss_gradient_mvn' in rows[6] and 'loss_depth_mvn' in rows[12]
    refine = caffe.Net(str(run / 'depthnet_refine' / 'train.prototxt'), final, caffe.TEST)
    for stage, layers in (
        ('depthnet_global', ('global_conv1', 'global_fc6', 'global_fc7')),
        ('depthnet_gradient', ('grad_conv1', 'gradient')),
    ):
        earlier = caffe.Net(str(run / stage / 'train.prototxt'), str(run / stage / 'final.caffemodel'), caffe.TEST)
        for layer in layers:
            for a, b in zip(refine.params[layer], earlier.params[layer]):
                np.testing.assert_array_equal(a.data, b.data)
    assert os.path.samefile(final, run / 'depthnet_refine' / 'final.caffemodel')
    inits = [r for r in read_log(run) if r['event'] == 'init']
    assert sorted(inits[2]['copied']) == ['depthnet_global', 'depthnet_gradient']
    # resuming the finished run skips every stage
    args = train.parse_args(
        ['--net', 'depthnet', '--dataset', 'cityscapes', '--out', str(run), '--quiet', '--no-plot', '--resume', 'auto']
    )
    assert training_run.train(args, stages=stages) == final
    assert len(iter_rows(run)) == 18


def test_refine_stage_without_its_inputs_is_refused(tmp_path):
    stage = training_run.Stage(
        'depthnet_refine',
        T.write_solver(str(tmp_path), 'r', T.refine_stage_net(), max_iter=2),
        training_run.STAGE_INPUTS['depthnet_refine'],
    )
    args = train.parse_args(
        ['--net', 'depthnet', '--dataset', 'cityscapes', '--out', str(tmp_path / 'run'), '--quiet', '--no-plot']
    )
    with pytest.raises(ToolError, match=r'needs the weights of stage depthnet_global'):
        training_run.train(args, stages=[training_run.Stage('depthnet_gradient', stage.solver, ()), stage])


# --- logs and plots ----------------------------------------------------------------------


def test_plot_log_draws_every_term(tmp_path):
    solver = hybrid_solver(tmp_path, max_iter=10)
    assert train.main(['--quiet', '--solver', str(solver), '--out', str(tmp_path / 'run')]) == 0
    png = tmp_path / 'run' / 'loss.png'
    assert png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    table = (tmp_path / 'run' / 'training.md').read_text()
    for term in ('loss_seg', 'loss_depth_abs', 'loss_depth_mvn', 'loss'):
        assert '| hybrid | `%s` |' % term in table
    png.unlink()
    assert plot_log.main([str(tmp_path / 'run'), '--out', str(tmp_path / 'x.png')]) == 0
    assert (tmp_path / 'x.png').stat().st_size > 1000
    assert plot_log.main([str(tmp_path / 'nowhere')]) == 2


def test_read_log_keeps_the_last_row_of_an_iteration(tmp_path):
    log = tmp_path / 'train_log.jsonl'
    rows = [
        dict(event='iter', stage='a', iter=1, loss_x=5.0),
        dict(event='iter', stage='a', iter=2, loss_x=4.0),  # lost: not in a snapshot
        dict(event='resume', stage='a', iter=1),
        dict(event='iter', stage='a', iter=2, loss_x=3.0),
    ]
    log.write_text(''.join(json.dumps(r) + '\n' for r in rows))
    got = read_log(str(tmp_path))
    assert [r.get('loss_x') for r in got] == [5.0, None, 3.0]


def test_help_and_argument_errors():
    out = subprocess.run(
        [sys.executable, '-m', 'tools.train', '--help'],
        cwd=T.REPO,
        capture_output=True,
        text=True,
        env=T.subprocess_env(),
    )
    assert out.returncode == 0 and '--init-deeplab' in out.stdout and '--resume' in out.stdout
    with pytest.raises(SystemExit):
        train.parse_args(['--net', 'a2'])
    assert run_main('--net', 'a1', '--dataset', 'cityscapes', '--init-depthnet', __file__) == 2


def test_test_net_losses_are_logged(tmp_path):
    cfg = tmp_path / 'cfg'
    cfg.mkdir()
    test_net = cfg / 'test.prototxt'
    test_net.write_text(str(T.hybrid_net(SEG_LOSS_WEIGHT, seed=5)))
    solver = T.write_solver(
        str(cfg),
        'hybrid',
        T.hybrid_net(SEG_LOSS_WEIGHT),
        base_lr=HYBRID_LR,
        max_iter=10,
        extra='test_net: "%s"\ntest_iter: 50\n' % test_net,
    )
    assert run_main('--solver', solver, '--out', tmp_path / 'run', '--test-every', 5, '--test-iters', 3) == 0
    val = [r for r in read_log(tmp_path / 'run') if r['event'] == 'val']
    assert [r['iter'] for r in val] == [5, 10]
    assert all(np.isfinite(r[k]) for r in val for k in ('loss_seg', 'loss_depth_abs', 'loss_depth_mvn'))
    assert val[0]['loss_seg'] != val[1]['loss_seg']
    copy = solver_config.read_solver(str(tmp_path / 'run' / 'solver.prototxt'))
    assert list(copy.test_iter) == [1] and copy.test_interval == solver_config.NEVER  # the driver tests


def test_a_failing_data_layer_is_reported_with_the_solver(tmp_path, capsys):
    proto = T.hybrid_net(SEG_LOSS_WEIGHT)
    proto.layer[0].python_param.param_str = '{"batch_size": 2'  # the layer's setup raises
    solver = T.write_solver(str(tmp_path / 'cfg'), 'broken', proto, max_iter=2)
    assert run_main('--solver', solver, '--out', tmp_path / 'run') == 2
    err = capsys.readouterr().err
    assert 'solver.prototxt: building the nets failed: JSONDecodeError' in err


def test_forked_children_do_not_inherit_the_stop_handler():
    """A data layer's forked worker must die on SIGTERM (its parent terminates it at exit),
    not take the parent's 'snapshot and stop' handler."""
    import multiprocessing

    from tools.training.guard import StopFlag

    stop = StopFlag()
    try:
        child = multiprocessing.get_context('fork').Process(target=time.sleep, args=(30,))
        child.start()
        time.sleep(0.5)  # a signal before the child's Python is set up is dropped by CPython
        child.terminate()
        child.join(timeout=10)
        assert child.exitcode == -signal.SIGTERM
        assert not stop  # the parent saw nothing
    finally:
        stop.restore()


def test_loss_weight_override(tmp_path, capsys):
    """--loss-weight rewrites the run's train net; the logged total uses the new weights."""
    solver = hybrid_solver(tmp_path, max_iter=2)
    assert (
        run_main(
            '--solver',
            solver,
            '--out',
            tmp_path / 'run',
            '--loss-weight',
            'loss_seg=10',
            '--loss-weight',
            'loss_depth_mvn=0',
        )
        == 0
    )
    net = solver_config.read_net(str(tmp_path / 'run' / 'train.prototxt'))
    weights = {l.top[0]: list(l.loss_weight) for l in net.layer if l.top and l.top[0].startswith('loss_')}
    assert weights == {'loss_seg': [10.0], 'loss_depth_abs': [pytest.approx(0.01)], 'loss_depth_mvn': [0.0]}
    row = iter_rows(tmp_path / 'run')[0]
    assert row['loss'] == pytest.approx(10 * row['loss_seg'] + 0.01 * row['loss_depth_abs'], rel=1e-5)
    assert run_main('--solver', solver, '--out', tmp_path / 'other', '--loss-weight', 'loss_x=1') == 2
    assert 'no top named loss_x (loss tops: loss_seg, loss_depth_abs, loss_depth_mvn)' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train.parse_args(['--solver', solver, '--loss-weight', 'seg=3'])
