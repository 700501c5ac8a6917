"""The Caffe we build (PyPI's brocolli-caffe sdist + our patches) behaves like BVLC Caffe on
everything HybridNet uses: each layer type checked against numpy, the SGD update, the
data layers, and the three fork bugs our patches fix."""

import os
import subprocess
import sys
import textwrap

import caffe
import numpy as np
from caffe import layers as L
from caffe import params as P

from tests.support import ROOT

VENV = os.path.join(ROOT, '.venv')
CAFFE_CLI = os.path.join(VENV, 'bin', 'caffe')

caffe.set_mode_cpu()


def write(path, text):
    with open(path, 'w') as f:
        f.write(str(text))
    return str(path)


def build(tmp_path, netspec, name='net.prototxt', phase=caffe.TEST):
    """Caffe net from a NetSpec; force_backward so diffs reach Input blobs too."""
    proto = netspec.to_proto()
    proto.force_backward = True
    return caffe.Net(write(tmp_path / name, proto), phase)


def numpy_conv2d(x, w, b, pad=0, stride=1, dilation=1):
    """Direct cross-correlation, N x C x H x W, as Caffe computes it."""
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    ekh, ekw = dilation * (kh - 1) + 1, dilation * (kw - 1) + 1
    oh, ow = (h + 2 * pad - ekh) // stride + 1, (wd + 2 * pad - ekw) // stride + 1
    out = np.zeros((n, o, oh, ow))
    for i in range(kh):
        for j in range(kw):
            patch = xp[
                :,
                :,
                i * dilation : i * dilation + stride * oh : stride,
                j * dilation : j * dilation + stride * ow : stride,
            ]
            out += np.einsum('nchw,oc->nohw', patch, w[:, :, i, j])
    return out + b[None, :, None, None]


def test_caffe_is_ours_and_imported_from_the_venv():
    assert os.path.realpath(sys.prefix) == os.path.realpath(VENV)
    cache = os.path.realpath(os.path.expanduser(os.environ.get('HYBRIDNET_CACHE', '~/.cache/hybridnet-caffe')))
    assert os.path.realpath(caffe.__file__).startswith(cache), caffe.__file__
    assert os.access(CAFFE_CLI, os.X_OK)


def test_registry_has_every_layer_type_the_nets_use():
    needed = {
        'Input',
        'Python',
        'Data',
        'HDF5Data',
        'DummyData',
        'Convolution',
        'Deconvolution',
        'ReLU',
        'LRN',
        'Pooling',
        'InnerProduct',
        'Reshape',
        'Flatten',
        'Concat',
        'Eltwise',
        'Dropout',
        'MVN',
        'Softmax',
        'SoftmaxWithLoss',
        'EuclideanLoss',
        'Power',
        'Threshold',
        'Split',
        'Slice',
        'Silence',
        'Scale',
        'Crop',
        'Accuracy',
    }
    missing = needed - set(caffe.layer_type_list())
    assert not missing, missing


def test_dilated_convolution_forward_and_weight_gradient_match_numpy(tmp_path):
    rng = np.random.RandomState(0)
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[2, 3, 13, 11]))
    n.target = L.Input(shape=dict(dim=[2, 4, 9, 7]))
    n.conv = L.Convolution(
        n.data, num_output=4, kernel_size=3, dilation=2, pad=0, weight_filler=dict(type='gaussian', std=0.1)
    )
    n.loss = L.EuclideanLoss(n.conv, n.target)
    net = build(tmp_path, n)
    x, t = rng.randn(2, 3, 13, 11), rng.randn(2, 4, 9, 7)
    w, b = net.params['conv'][0].data.copy(), rng.randn(4).astype(np.float32)
    net.params['conv'][1].data[...] = b
    net.blobs['data'].data[...] = x
    net.blobs['target'].data[...] = t
    net.forward()
    y = numpy_conv2d(x, w, b, dilation=2)
    np.testing.assert_allclose(net.blobs['conv'].data, y, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(net.blobs['loss'].data, ((y - t) ** 2).sum() / 2 / 2, rtol=1e-4)
    net.backward()
    dy = (y - t) / 2
    dw = np.zeros_like(w, dtype=np.float64)
    for i in range(3):
        for j in range(3):
            patch = x[:, :, 2 * i : 2 * i + 9, 2 * j : 2 * j + 7]
            dw[:, :, i, j] = np.einsum('nchw,nohw->oc', patch, dy)
    np.testing.assert_allclose(net.params['conv'][0].diff, dw, rtol=1e-3, atol=1e-4)


def test_lrn_across_channels_divides_alpha_by_size(tmp_path):
    rng = np.random.RandomState(1)
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[2, 7, 4, 5]))
    n.lrn = L.LRN(n.data, local_size=5, alpha=1e-1, beta=0.75)
    net = build(tmp_path, n)
    x = rng.randn(2, 7, 4, 5) * 3
    net.blobs['data'].data[...] = x
    net.forward()
    sq = np.pad(x**2, ((0, 0), (2, 2), (0, 0), (0, 0)))
    window = sum(sq[:, k : k + 7] for k in range(5))
    np.testing.assert_allclose(net.blobs['lrn'].data, x / (1 + 0.1 / 5 * window) ** 0.75, rtol=1e-5)


def test_pooling_rounds_up_like_deeplab_and_alexnet(tmp_path):
    # 6 -> ceil((6 - 3) / 2) + 1 = 3 windows (floor mode would give 2); the last window is
    # clipped to the input.
    rng = np.random.RandomState(2)
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 2, 6, 6]))
    n.pool = L.Pooling(n.data, pool=P.Pooling.MAX, kernel_size=3, stride=2)
    n.pool_pad = L.Pooling(n.data, pool=P.Pooling.MAX, kernel_size=3, stride=2, pad=1)
    net = build(tmp_path, n)
    x = rng.randn(1, 2, 6, 6)
    net.blobs['data'].data[...] = x
    net.forward()
    assert net.blobs['pool'].data.shape == (1, 2, 3, 3)
    expect = np.array(
        [[[x[0, c, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3].max() for j in range(3)] for i in range(3)] for c in range(2)]
    )
    np.testing.assert_allclose(net.blobs['pool'].data[0], expect, rtol=1e-6)
    # DeepLab's pool1-3 geometry: 3x3/2 pad 1 maps 321 -> 161 -> 81 -> 41 (paper L255-257).
    assert net.blobs['pool_pad'].data.shape == (1, 2, 4, 4)


def test_mvn_subtracts_mean_and_divides_by_std_plus_eps(tmp_path):
    rng = np.random.RandomState(3)
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[3, 2, 5, 6]))
    n.mvn = L.MVN(n.data)
    net = build(tmp_path, n)
    x = rng.randn(3, 2, 5, 6) * 4 + 7
    net.blobs['data'].data[...] = x
    net.forward()
    mean = x.mean(axis=(2, 3), keepdims=True)
    std = np.sqrt(((x - mean) ** 2).mean(axis=(2, 3), keepdims=True))
    np.testing.assert_allclose(net.blobs['mvn'].data, (x - mean) / (std + 1e-9), rtol=1e-4, atol=1e-5)


def test_softmax_loss_ignores_255_and_normalises_over_valid_pixels(tmp_path):
    rng = np.random.RandomState(4)
    n = caffe.NetSpec()
    n.score = L.Input(shape=dict(dim=[2, 5, 3, 4]))
    n.label = L.Input(shape=dict(dim=[2, 1, 3, 4]))
    n.loss = L.SoftmaxWithLoss(n.score, n.label, loss_param=dict(ignore_label=255))
    net = build(tmp_path, n)
    s = rng.randn(2, 5, 3, 4)
    lab = rng.randint(0, 5, size=(2, 1, 3, 4)).astype(float)
    lab[0, 0, 0, :] = 255
    lab[1, 0, 2, 1] = 255
    net.blobs['score'].data[...] = s
    net.blobs['label'].data[...] = lab
    net.forward()
    p = np.exp(s - s.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    valid = lab[:, 0] != 255
    li = np.where(valid, lab[:, 0], 0).astype(int)
    logp = np.log(np.take_along_axis(p, li[:, None], 1))[:, 0]
    np.testing.assert_allclose(net.blobs['loss'].data, -logp[valid].sum() / valid.sum(), rtol=1e-5)
    net.backward()
    onehot = np.eye(5)[li].transpose(0, 3, 1, 2)
    grad = (p - onehot) * valid[:, None] / valid.sum()
    np.testing.assert_allclose(net.blobs['score'].diff, grad, rtol=1e-4, atol=1e-7)


PYLAYER = '''
import caffe


class TimesTwo(caffe.Layer):
    """Doubles its input; the gradient doubles too."""

    def setup(self, bottom, top):
        self.scale = float(self.param_str or 2)

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)

    def forward(self, bottom, top):
        top[0].data[...] = self.scale * bottom[0].data

    def backward(self, top, propagate_down, bottom):
        bottom[0].diff[...] = self.scale * top[0].diff
'''


def python_layer_net(tmp_path):
    write(tmp_path / 'pylayer_mod.py', PYLAYER)
    n = caffe.NetSpec()
    n.data = L.DummyData(shape=dict(dim=[2, 3]), data_filler=dict(type='constant', value=1.5))
    n.target = L.DummyData(shape=dict(dim=[2, 3]), data_filler=dict(type='constant', value=0))
    n.ip = L.InnerProduct(n.data, num_output=3, weight_filler=dict(type='gaussian', std=0.1))
    n.twice = L.Python(n.ip, module='pylayer_mod', layer='TimesTwo', param_str='2')
    n.loss = L.EuclideanLoss(n.twice, n.target)
    return write(tmp_path / 'py.prototxt', n.to_proto())


def test_python_layer_forward_and_backward(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    net = caffe.Net(python_layer_net(tmp_path), caffe.TRAIN)
    net.forward()
    np.testing.assert_allclose(net.blobs['twice'].data, 2 * net.blobs['ip'].data)
    net.backward()
    np.testing.assert_allclose(net.blobs['ip'].diff, 2 * net.blobs['twice'].diff)


def test_cli_runs_python_layers_through_the_wrapper(tmp_path):
    proto = python_layer_net(tmp_path)
    # Importing tools.train / tools.evaluate quiets glog for this process (and its children).
    env = dict(os.environ, PYTHONPATH=str(tmp_path), GLOG_minloglevel='0')
    out = subprocess.run(
        [CAFFE_CLI, 'time', '-model', proto, '-iterations', '2'], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert 'Average Forward-Backward' in out.stderr


def make_lmdb(path, images, labels):
    import lmdb

    env = lmdb.open(str(path), map_size=1 << 26)
    with env.begin(write=True) as txn:
        for i, (im, lab) in enumerate(zip(images, labels)):
            txn.put(b'%08d' % i, caffe.io.array_to_datum(im, int(lab)).SerializeToString())
    env.close()
    return str(path)


def test_lmdb_and_hdf5_data_layers_serve_what_was_written(tmp_path):
    import h5py

    rng = np.random.RandomState(5)
    images = rng.randint(0, 256, size=(4, 3, 5, 6)).astype(np.uint8)
    labels = np.arange(4)
    src = make_lmdb(tmp_path / 'db', images, labels)
    with h5py.File(tmp_path / 'd.h5', 'w') as f:
        # HDF5Data reads the datasets named like its tops.
        f['h5data'] = rng.randn(4, 2, 3, 3).astype(np.float32)
        f['h5label'] = np.arange(4, dtype=np.float32)
        h5 = (f['h5data'][()], f['h5label'][()])
    write(tmp_path / 'h5list.txt', str(tmp_path / 'd.h5') + '\n')
    n = caffe.NetSpec()
    n.data, n.label = L.Data(source=src, backend=P.Data.LMDB, batch_size=4, ntop=2)
    n.h5data, n.h5label = L.HDF5Data(source=str(tmp_path / 'h5list.txt'), batch_size=4, ntop=2)
    net = build(tmp_path, n)
    net.forward()
    np.testing.assert_array_equal(net.blobs['data'].data, images)
    np.testing.assert_array_equal(net.blobs['label'].data, labels)
    np.testing.assert_allclose(net.blobs['h5data'].data, h5[0])
    np.testing.assert_allclose(net.blobs['h5label'].data, h5[1])


def test_sgd_momentum_weight_decay_and_poly_policy_match_numpy(tmp_path):
    rng = np.random.RandomState(6)
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[4, 3]))
    n.target = L.Input(shape=dict(dim=[4, 2]))
    n.ip = L.InnerProduct(
        n.data,
        num_output=2,
        weight_filler=dict(type='gaussian', std=0.5),
        param=[dict(lr_mult=1, decay_mult=1), dict(lr_mult=2, decay_mult=0)],
    )
    n.loss = L.EuclideanLoss(n.ip, n.target)
    net_path = write(tmp_path / 'train.prototxt', n.to_proto())
    base_lr, momentum, decay, power, max_iter = 0.1, 0.9, 0.005, 0.9, 10
    solver_path = write(
        tmp_path / 'solver.prototxt',
        textwrap.dedent(f'''\
        net: "{net_path}"
        base_lr: {base_lr}
        lr_policy: "poly"
        power: {power}
        max_iter: {max_iter}
        momentum: {momentum}
        weight_decay: {decay}
        display: 0
        snapshot_prefix: "{tmp_path}/snap"
        '''),
    )
    solver = caffe.SGDSolver(solver_path)
    x, t = rng.randn(4, 3), rng.randn(4, 2)
    solver.net.blobs['data'].data[...] = x
    solver.net.blobs['target'].data[...] = t
    w = solver.net.params['ip'][0].data.astype(np.float64).copy()
    b = solver.net.params['ip'][1].data.astype(np.float64).copy()
    vw, vb = np.zeros_like(w), np.zeros_like(b)
    for it in range(3):
        solver.step(1)
        lr = base_lr * (1 - it / max_iter) ** power
        y = x @ w.T + b
        gw, gb = (y - t).T @ x / 4, (y - t).sum(0) / 4
        vw = momentum * vw + lr * (gw + decay * w)
        vb = momentum * vb + 2 * lr * gb
        w, b = w - vw, b - vb
        np.testing.assert_allclose(solver.net.params['ip'][0].data, w, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(solver.net.params['ip'][1].data, b, rtol=1e-5, atol=1e-6)
    assert solver.iter == 3


def test_cli_train_weights_really_copies_weights(tmp_path):
    """The fork parsed `caffe train --weights` and ignored it (patch 03)."""
    n = caffe.NetSpec()
    n.data = L.DummyData(shape=dict(dim=[2, 3]), data_filler=dict(type='constant', value=1))
    n.target = L.DummyData(shape=dict(dim=[2, 2]), data_filler=dict(type='constant', value=0))
    n.ip = L.InnerProduct(
        n.data,
        num_output=2,
        weight_filler=dict(type='gaussian', std=1),
        param=[dict(lr_mult=0, decay_mult=0), dict(lr_mult=0, decay_mult=0)],
    )
    n.loss = L.EuclideanLoss(n.ip, n.target)
    net_path = write(tmp_path / 'net.prototxt', n.to_proto())
    known = np.arange(6, dtype=np.float32).reshape(2, 3) / 7
    net = caffe.Net(net_path, caffe.TEST)
    net.params['ip'][0].data[...] = known
    net.save(str(tmp_path / 'init.caffemodel'))
    solver = write(
        tmp_path / 'solver.prototxt',
        f'net: "{net_path}"\nbase_lr: 0.1\nlr_policy: "fixed"\n'
        f'max_iter: 1\ndisplay: 1\nsnapshot_prefix: "{tmp_path}/snap"\n',
    )
    out = subprocess.run(
        [CAFFE_CLI, 'train', '--solver', solver, '--weights', str(tmp_path / 'init.caffemodel')],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    trained = caffe.Net(net_path, caffe.TEST, weights=str(tmp_path / 'snap_iter_1.caffemodel'))
    np.testing.assert_array_equal(trained.params['ip'][0].data, known)


def test_two_live_nets_on_one_lmdb_do_not_deadlock(tmp_path):
    """A pycaffe Net beside a Solver on the same prototxt shared one cursor and hung (patch 02)."""
    rng = np.random.RandomState(7)
    src = make_lmdb(tmp_path / 'db', rng.randint(0, 256, size=(6, 1, 2, 2)).astype(np.uint8), range(6))
    n = caffe.NetSpec()
    n.data, n.label = L.Data(source=src, backend=P.Data.LMDB, batch_size=2, ntop=2)
    n.ip = L.InnerProduct(n.data, num_output=1, weight_filler=dict(type='constant', value=0.1))
    n.loss = L.EuclideanLoss(n.ip, n.label)
    net_path = write(tmp_path / 'net.prototxt', n.to_proto())
    solver = write(
        tmp_path / 'solver.prototxt',
        f'net: "{net_path}"\ntest_iter: 2\ntest_interval: 2\n'
        f'base_lr: 0.01\nlr_policy: "fixed"\nmax_iter: 4\ndisplay: 0\n'
        f'snapshot_prefix: "{tmp_path}/snap"\n',
    )
    script = textwrap.dedent(f'''
        import caffe
        caffe.set_mode_cpu()
        net = caffe.Net("{net_path}", caffe.TEST)
        solver = caffe.SGDSolver("{solver}")
        for _ in range(3):
            net.forward()
        solver.step(4)
        print("done", solver.iter)
        ''')
    out = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert 'done 4' in out.stdout
