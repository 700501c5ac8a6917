"""The driver on the real generated A2 and the real data layer: data_prep's Cityscapes sample
(official layout, 1024 x 2048) -> converter -> `python -m tools.train --net a2` for one
iteration, initialised from caffemodels the test writes with the real layer shapes."""

import json
import os
import re
import subprocess
import sys

import caffe
import numpy as np
import pytest
from caffe.proto import caffe_pb2
from google.protobuf import text_format

from tests.support import toy_scenes as T
from tools.core.protos import layer_blobs, read_caffemodel
from tools.training import run as training_run
from tools.training import surgery
from tools.training.log import read_log

pytestmark = pytest.mark.slow


@pytest.fixture(scope='module')
def cityscapes_db(tmp_path_factory):
    root, out = tmp_path_factory.mktemp('cityscapes'), tmp_path_factory.mktemp('db')
    for command in (
        ['sample', '--dataset', 'cityscapes', '--out', str(root), '--count', '1'],
        ['cityscapes', '--root', str(root), '--out', str(out)],
    ):
        subprocess.run([sys.executable, '-m', 'data_prep'] + command, check=True, capture_output=True, cwd=T.REPO)
    return out


def test_generated_nets_carry_the_names_the_surgery_copies():
    for dataset in ('cityscapes', 'sunrgbd', 'nyuv2'):
        for net in ('a1', 'a2', 'deeplab_aspp'):
            proto = caffe.proto.caffe_pb2.NetParameter()
            path = os.path.join(T.REPO, 'prototxt', '%s_%s' % (net, dataset), 'train.prototxt')
            from google.protobuf import text_format

            text_format.Merge(open(path).read(), proto)
            names = {layer.name for layer in proto.layer}
            assert set(surgery.VGG_LAYERS) <= names, path
            assert {'fc%d_%d' % (f, b) for f in (6, 7) for b in surgery.BRANCHES} <= names, path
            assert any(n.startswith(surgery.GLOBAL_PREFIX) for n in names) == (net == 'a2'), path


def test_one_iteration_of_a2_from_the_inits(cityscapes_db, tmp_path):
    """lr 0 keeps the weights as initialised: the final snapshot holds the DeepLab model's
    VGG/ASPP values (fc6/fc7 in all four branches) and the DepthNet model's fitting convs,
    while its fc6 (another input size) keeps the filler; every loss term is logged."""
    deploy = caffe.Net(os.path.join(T.REPO, 'prototxt', 'a2_cityscapes', 'deploy.prototxt'), caffe.TEST)
    shapes = {name: [b.data.shape for b in blobs] for name, blobs in deploy.params.items()}
    del deploy
    constant = lambda i, layer: [np.full(s, 0.001 * (i + 1), np.float32) for s in shapes[layer]]  # noqa: E731
    deeplab = {n: constant(i, n) for i, n in enumerate(surgery.VGG_LAYERS)}
    deeplab['fc6'], deeplab['fc7'] = constant(20, 'fc6_1'), constant(21, 'fc7_1')
    depthnet = {'conv%d' % k: constant(30 + k, 'global_conv%d' % k) for k in range(1, 6)}
    depthnet['fc-main'] = [np.ones((1024, 9216), np.float32), np.ones(1024, np.float32)]
    init_deeplab = T.write_model(str(tmp_path / 'vgg16_reduced.caffemodel'), deeplab)
    init_depthnet = T.write_model(str(tmp_path / 'depthnet.caffemodel'), depthnet)
    run = tmp_path / 'run'
    proc = subprocess.run(
        T.train_command(
            '--net',
            'a2',
            '--dataset',
            'cityscapes',
            '--data',
            str(cityscapes_db),
            '--out',
            str(run),
            '--iters',
            '1',
            '--batch',
            '1',
            '--base-lr',
            '0',
            '--init-deeplab',
            init_deeplab,
            '--init-depthnet',
            init_depthnet,
        ),
        env=T.subprocess_env(),
        cwd=T.REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr
    assert 'RANDOM INIT' not in proc.stderr
    assert (
        'skipped global_fc6       <- fc-main        shapes 1024x9216, 1024 in the file, '
        '1024x92416, 1024 in the net' in proc.stdout
    )
    assert 'no layer fc-depth or global_fc7 in the file' in proc.stdout
    assert 'refine_conv' not in proc.stdout  # A2's refining net stays random (paper L303-304)
    rows = [r for r in read_log(run) if r['event'] == 'iter']
    assert len(rows) == 1 and {'loss_seg', 'loss_depth_abs', 'loss_depth_mvn'} <= set(rows[0])
    # The test's constant VGG weights blow activations up, so the scores are not near-uniform:
    # only ask for a finite, positive cross-entropy per term.
    for term in ('loss_seg', 'loss_depth_abs', 'loss_depth_mvn'):
        assert np.isfinite(rows[0][term]) and rows[0][term] > 0, (term, rows[0][term])
    final = layer_blobs(read_caffemodel(str(run / training_run.FINAL)))
    for name in ('conv1_1', 'conv5_3'):
        np.testing.assert_array_equal(final[name][0], deeplab[name][0])
    for branch in surgery.BRANCHES:
        np.testing.assert_array_equal(final['fc6_%d' % branch][0], deeplab['fc6'][0])
        np.testing.assert_array_equal(final['fc7_%d' % branch][1], deeplab['fc7'][1])
    np.testing.assert_array_equal(final['global_conv3'][0], depthnet['conv3'][0])
    assert not np.all(final['global_fc6'][0] == 1)
    np.testing.assert_array_equal(
        final['fixed_up2_refine'][0][0, 0], [[0.25, 0.5, 0.25], [0.5, 1, 0.5], [0.25, 0.5, 0.25]]
    )
    # resuming reads A2's 551 MB snapshots (over protobuf's default 512 MB limit: Caffe patch 05)
    proc = subprocess.run(
        T.train_command(
            '--net',
            'a2',
            '--dataset',
            'cityscapes',
            '--data',
            str(cityscapes_db),
            '--out',
            str(run),
            '--iters',
            '2',
            '--batch',
            '1',
            '--base-lr',
            '0',
            '--resume',
            'auto',
            '--allow-changes',  # 2 iterations instead of 1 (the inits, not given, are the recorded ones)
        ),
        env=T.subprocess_env(),
        cwd=T.REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr
    events = read_log(run)
    assert next(r for r in events if r['event'] == 'resume')['iter'] == 1
    assert [r['iter'] for r in events if r['event'] == 'iter'] == [1, 2]


def _stock_solver(tmp_path, net, db):
    """The generated solver of `net` rewritten for the stock `caffe` CLI: one iteration,
    batch 1, the test's database, no test net; nothing else changed (the nets keep their
    fixed layers' blobs: no driver writes them)."""
    solver = caffe_pb2.SolverParameter()
    text_format.Merge(open(os.path.join(T.REPO, 'solvers', '%s_cityscapes.prototxt' % net)).read(), solver)
    train = caffe_pb2.NetParameter()
    text_format.Merge(open(os.path.join(T.REPO, solver.train_net)).read(), train)
    params = json.loads(train.layer[0].python_param.param_str)
    params.update(source=str(db / 'train'), batch_size=1, workers=0)
    train.layer[0].python_param.param_str = json.dumps(params)
    (tmp_path / 'train.prototxt').write_text(str(train))
    solver.train_net = str(tmp_path / 'train.prototxt')
    del solver.test_net[:], solver.test_iter[:]
    solver.ClearField('test_interval')
    solver.max_iter, solver.display, solver.average_loss = 1, 1, 1
    solver.snapshot_prefix = str(tmp_path / 'stock')
    path = tmp_path / 'solver.prototxt'
    path.write_text(str(solver))
    return str(path)


def _without_fixed_layers(deploy, path):
    """A caffemodel of `deploy`'s filler weights without the `fixed_*` layers: their weights
    can only come from the prototxt."""
    net = caffe.Net(deploy, caffe.TEST)
    net.save(path)
    del net
    model = caffe_pb2.NetParameter()
    model.ParseFromString(open(path, 'rb').read())
    kept = [layer for layer in model.layer if not layer.name.startswith('fixed_')]
    del model.layer[:]
    model.layer.extend(kept)
    open(path, 'wb').write(model.SerializeToString())
    return path


def test_stock_caffe_cli_and_the_driver_give_the_same_first_losses(cityscapes_db, tmp_path):
    """Self-contained nets: `caffe train -solver <generated solver>` (no project code but the
    data layer) and `python -m tools.train` compute the same first-iteration depth losses of
    A1 from the same weights (a caffemodel without the fixed layers): the 41 -> 81 zoom comes
    from the prototxt in both. (A1's depth path has no dropout; loss_seg's has.)"""
    weights = _without_fixed_layers(
        os.path.join(T.REPO, 'prototxt', 'a1_cityscapes', 'deploy.prototxt'), str(tmp_path / 'w.caffemodel')
    )
    stock = subprocess.run(
        [
            os.path.join(T.REPO, '.venv', 'bin', 'caffe'),
            'train',
            '-solver',
            _stock_solver(tmp_path, 'a1', cityscapes_db),
        ]
        + ['-weights', weights],
        env=dict(T.subprocess_env(), GLOG_minloglevel='0', GLOG_logtostderr='1'),
        cwd=T.REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert stock.returncode == 0, stock.stderr[-3000:]
    printed = dict(re.findall(r'Train net output #\d+: (loss_\w+) = ([-+.\deE]+)', stock.stderr))
    run = tmp_path / 'run'
    ours = subprocess.run(
        T.train_command('--net', 'a1', '--dataset', 'cityscapes', '--data', str(cityscapes_db), '--out', str(run))
        + ['--iters', '1', '--batch', '1', '--weights', weights],
        env=T.subprocess_env(),
        cwd=T.REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert ours.returncode == 0, ours.stderr[-3000:]
    row = next(r for r in read_log(run) if r['event'] == 'iter')
    for term in ('loss_depth_abs', 'loss_depth_mvn'):
        assert float(printed[term]) == pytest.approx(row[term], rel=1e-4), term
    assert float(printed['loss_depth_abs']) > 0
