"""Every generated net built by Caffe at full size (321 x 321, batch 1): forward and
backward of each train net (data layer swapped for Input layers with the same tops),
shapes and parameter counts against `netgen.shapes`. (Every checked-in net of every
dataset is loaded, and the paper's numbers are read back, in tests/test_netgen_paper.py.)

Each architecture is built once (module-scoped, parametrised fixture), in phase TEST so
that dropout is the identity and the deploy net must reproduce the train net's maps
exactly (the TRAIN phase runs in tests/test_netgen_real_data.py)."""

import collections
import time

import caffe
import numpy as np
import pytest

from netgen import config, shapes
from netgen.fixed_weights import check_fixed_weights
from netgen.nets import SPECS, build

pytestmark = pytest.mark.slow
caffe.set_mode_cpu()
DATASET = 'cityscapes'


def caffe_net(tmp_path_factory, proto, phase):
    path = tmp_path_factory.mktemp('net') / (proto.name + '.prototxt')
    path.write_text(str(proto))
    net = caffe.Net(str(path), phase)
    check_fixed_weights(net)
    return net


def fake_batch(net, num_classes, seed=0):
    rng = np.random.RandomState(seed)
    batch = {'data': rng.uniform(-120, 130, net.blobs['data'].data.shape)}
    if 'label' in net.blobs:
        label = rng.randint(0, num_classes, net.blobs['label'].data.shape).astype(float)
        label[..., :4, :] = config.IGNORE_LABEL
        batch['label'] = label
    for name in net.blobs:
        if name.startswith('depth_gt_'):
            depth = rng.uniform(1, 80, net.blobs[name].data.shape)
            depth[..., -5:, :] = 0  # invalid rows
            batch[name] = depth
    return batch


Trained = collections.namedtuple('Trained', 'name proto net batch losses fwd_s bwd_s')


@pytest.fixture(scope='module', params=list(SPECS))
def trained(request, tmp_path_factory):
    name = request.param
    proto = build(name, DATASET, 'train', data_layer='input', batch_size=1)
    net = caffe_net(tmp_path_factory, proto, caffe.TEST)
    batch = fake_batch(net, config.NUM_CLASSES[DATASET])
    for k, v in batch.items():
        net.blobs[k].data[...] = v
    t0 = time.time()
    losses = {k: float(v) for k, v in net.forward().items()}
    t1 = time.time()
    net.backward()
    t2 = time.time()
    yield Trained(name, proto, net, batch, losses, t1 - t0, t2 - t1)
    del net


def test_train_forward_backward(trained):
    losses = trained.losses
    print('\n%s: forward %.1f s, backward %.1f s, losses %s' % (trained.name, trained.fwd_s, trained.bwd_s, losses))
    assert set(losses) == {l.top[0] for l in trained.proto.layer if l.type in ('SoftmaxWithLoss', 'EuclideanLoss')}
    assert all(k.startswith('loss_') for k in losses)
    for k, v in losses.items():
        assert np.isfinite(v) and v > 0, (k, v)
    if 'loss_seg' in losses:  # near-uniform scores at init: about ln K
        assert losses['loss_seg'] == pytest.approx(np.log(config.NUM_CLASSES[DATASET]), rel=0.5)
    for layer in trained.proto.layer:
        if layer.name not in trained.net.params:
            continue
        diffs = [np.abs(b.diff).sum() for b in trained.net.params[layer.name]]
        mults = [p.lr_mult for p in layer.param]
        assert len(diffs) == len(mults), layer.name
        for diff, mult in zip(diffs, mults):
            assert np.isfinite(diff), layer.name
            if mult == 0:
                assert diff == 0, layer.name  # fixed / frozen: no gradient
            else:
                assert diff > 0, layer.name  # every trained weight learns


def test_shapes_and_parameter_counts_match_caffe(trained):
    blobs, params = shapes.infer(trained.proto)
    net = trained.net
    for name, shape in blobs.items():
        assert list(net.blobs[name].data.shape) == shape, name
    assert set(params) == set(net.params)
    for name, (blob_shapes, _) in params.items():
        assert [list(b.data.shape) for b in net.params[name]] == blob_shapes, name
    total = sum(b.data.size for bs in net.params.values() for b in bs)
    trainable = sum(
        b.data.size
        for layer in trained.proto.layer
        if layer.name in net.params
        for b, p in zip(net.params[layer.name], layer.param)
        if p.lr_mult > 0
    )
    print(
        '\n%s (%s): %s parameters, %s trainable' % (trained.name, DATASET, format(total, ','), format(trainable, ','))
    )
    assert shapes.count_params(trained.proto) == (total, trainable)


def test_deploy_net_computes_what_the_train_net_computes(trained, tmp_path_factory):
    """The deploy net with the train net's weights gives the same maps on the same image."""
    name = trained.name
    proto = build(name, DATASET, 'deploy')
    net = caffe_net(tmp_path_factory, proto, caffe.TEST)
    for layer, blobs in net.params.items():
        for dst, src in zip(blobs, trained.net.params[layer]):
            dst.data[...] = src.data
    net.blobs['data'].data[...] = trained.batch['data']
    out = net.forward()
    spec = SPECS[name]
    assert set(out) == set(spec.outputs) == set(net.outputs)
    k = config.NUM_CLASSES[DATASET]
    expected = {
        'seg_prob': (1, k, 41, 41),
        'depth': (1, 1, 81, 81),
        'depth_global': (1, 1, 41, 41),
        'gradient': (1, 2, 41, 41),
    }
    for blob, value in out.items():
        assert value.shape == expected[blob] and np.all(np.isfinite(value)), blob
    train = {b: trained.net.blobs[b].data for b in out if b != 'seg_prob'}
    if 'seg_prob' in out:
        np.testing.assert_allclose(out['seg_prob'].sum(1), 1, rtol=1e-5)
        fc8 = trained.net.blobs['fc8'].data.astype(np.float64)
        e = np.exp(fc8 - fc8.max(1, keepdims=True))
        train['seg_prob'] = e / e.sum(1, keepdims=True)
    for blob, value in out.items():
        np.testing.assert_allclose(value, train[blob], rtol=1e-4, atol=1e-6 * np.abs(value).max(), err_msg=blob)
