"""The checked-in train/test nets with the real data layer, `data_prep.layers.HybridData`,
reading a small NYUv2 sample database (only the `source` and the batch size change)."""

import json
import os

import caffe
import numpy as np
import pytest
from caffe.proto import caffe_pb2
from google.protobuf import text_format

import netgen
from netgen import config, shapes
from netgen.fixed_weights import check_fixed_weights
from netgen.nets import SPECS
from tests.support import ROOT

DATASET = 'nyuv2'

pytestmark = pytest.mark.slow
caffe.set_mode_cpu()


@pytest.fixture(scope='module')
def database(tmp_path_factory):
    """data/nyuv2/{train,test} made from data_prep's sample writer (2 records each)."""
    from data_prep import convert
    from data_prep.sample import write_sample

    tmp = tmp_path_factory.mktemp('nyuv2')
    write_sample(DATASET, str(tmp / 'raw'), 2, 0)
    for split in ('train', 'test'):
        convert.convert_split(DATASET, str(tmp / 'raw'), str(tmp / 'db'), split, workers=1)
    return tmp / 'db'


def load_checked_in(net, phase, database, tmp_path, batch_size):
    """The repo's prototxt with the database and batch size redirected."""
    proto = caffe_pb2.NetParameter()
    with open(os.path.join(ROOT, netgen.paths(net, DATASET)[phase])) as f:
        text_format.Merge(f.read(), proto)
    data = proto.layer[0]
    params = json.loads(data.python_param.param_str)
    split = os.path.basename(params['source'])
    assert params['source'] == 'data/%s/%s' % (DATASET, split)
    params.update(source=str(database / split), batch_size=batch_size)
    data.python_param.param_str = json.dumps(params)
    path = tmp_path / ('%s_%s.prototxt' % (net, phase))
    path.write_text(str(proto))
    net_ = caffe.Net(str(path), caffe.TRAIN if phase == 'train' else caffe.TEST)
    check_fixed_weights(net_)
    return proto, net_


@pytest.mark.parametrize('net', list(SPECS))
def test_data_tops_of_the_checked_in_nets(net, database, tmp_path):
    for phase in ('train', 'test'):
        proto, n = load_checked_in(net, phase, database, tmp_path, batch_size=2)
        n.forward(end='hybrid_data')
        blobs = shapes.infer(proto)[0]
        for top in proto.layer[0].top:
            value = n.blobs[top].data
            assert list(value.shape) == blobs[top], (net, phase, top)
            assert np.all(np.isfinite(value))
            if top == 'label':
                labels = set(np.unique(value).astype(int))
                assert labels <= set(range(config.NUM_CLASSES[DATASET])) | {255}
            elif top.startswith('depth_gt_'):
                assert value.min() >= 0 and value.max() > 0
        del n


@pytest.mark.parametrize('net', ['depthnet_global', 'depthnet_gradient'])
def test_training_step_with_real_batches(net, database, tmp_path):
    """TRAIN phase (dropout active), real batches: finite positive losses, gradients."""
    proto, n = load_checked_in(net, 'train', database, tmp_path, batch_size=2)
    losses = n.forward()
    n.backward()
    assert losses and all(k.startswith('loss_') for k in losses)
    for k, v in losses.items():
        assert np.isfinite(v) and v > 0, (k, v)
    first = [l.name for l in proto.layer if l.type == 'Convolution'][0]
    assert np.abs(n.params[first][0].diff).sum() > 0
