"""tools.surgery: pretrained weights copied by name, checked value by value.

The source caffemodels are written by the tests with known values (tests.support.toy_scenes), the
target is a tiny net with the real layer names (conv1_1..conv5_3, fc6_i/fc7_i/fc8_i, global_*).
"""

import caffe  # noqa: F401  (fail, not skip, without Caffe)
import numpy as np
import pytest

from tests.support import toy_scenes as T
from tools.core import ToolError as SurgeryError
from tools.training import surgery
from tools.training.surgery import VGG_LAYERS


@pytest.fixture
def net(tmp_path):
    return T.make_net(T.mini_vgg_aspp(), str(tmp_path))


def snapshot(net):
    return {name: [b.data.copy() for b in blobs] for name, blobs in net.params.items()}


def model_like(net, layers, offset=1.0, rename=None, shapes=None):
    """{source name: arrays of known values} shaped like net's `layers` (or `shapes`)."""
    out = {}
    for i, layer in enumerate(layers):
        shape_list = (shapes or {}).get(layer) or [b.data.shape for b in net.params[layer]]
        out[(rename or {}).get(layer, layer)] = [
            T.known_values(s, offset + 10 * i + j) for j, s in enumerate(shape_list)
        ]
    return out


def assert_layers(net, expected):
    for layer, arrays in expected.items():
        assert len(net.params[layer]) == len(arrays)
        for blob, array in zip(net.params[layer], arrays):
            np.testing.assert_array_equal(blob.data, array.reshape(blob.data.shape))


def test_deeplab_init_copies_exactly_the_named_layers(net, tmp_path):
    aspp = ['fc%d_%d' % (f, b) for f in (6, 7) for b in (1, 2, 3, 4)]
    source = model_like(net, list(VGG_LAYERS) + aspp)
    source['fc8_1'] = [np.full(b.data.shape, 99, np.float32) for b in net.params['fc8_1']]
    source['unrelated'] = [np.ones((2, 2), np.float32)]
    path = T.write_model(str(tmp_path / 'deeplab.caffemodel'), source)
    before = snapshot(net)
    copied = surgery.init_from_deeplab(net, path, log=lambda m: None)
    assert copied == list(VGG_LAYERS) + ['fc6_1', 'fc6_2', 'fc6_3', 'fc6_4', 'fc7_1', 'fc7_2', 'fc7_3', 'fc7_4']
    assert_layers(net, {n: source[n] for n in copied})
    untouched = [n for n in net.params if n not in copied]
    assert 'fc8_1' in untouched and 'global_fc6' in untouched
    assert_layers(net, {n: before[n] for n in untouched})


def test_plain_vgg16_fc6_fc7_fill_all_four_branches(net, tmp_path):
    source = model_like(net, list(VGG_LAYERS) + ['fc6_1', 'fc7_1'], rename={'fc6_1': 'fc6', 'fc7_1': 'fc7'})
    path = T.write_model(str(tmp_path / 'vgg16_reduced.caffemodel'), source)
    lines = []
    surgery.init_from_deeplab(net, path, log=lines.append)
    for branch in (1, 2, 3, 4):
        assert_layers(net, {'fc6_%d' % branch: source['fc6'], 'fc7_%d' % branch: source['fc7']})
    assert 'ASPP from fc6, fc7' in lines[0]


def test_mismatched_shapes_are_refused_and_nothing_is_copied(net, tmp_path):
    shapes = {'conv3_2': [(5, 6, 3, 3), (5,)], 'fc6_1': [(40, 250), (40,)]}
    source = model_like(
        net, list(VGG_LAYERS) + ['fc6_1', 'fc7_1'], shapes=shapes, rename={'fc6_1': 'fc6', 'fc7_1': 'fc7'}
    )
    path = T.write_model(str(tmp_path / 'full_vgg16.caffemodel'), source)
    before = snapshot(net)
    with pytest.raises(SurgeryError) as err:
        surgery.init_from_deeplab(net, path, log=lambda m: None)
    message = str(err.value)
    assert path in message
    assert 'conv3_2 -> conv3_2: shapes 5x6x3x3, 5 in the file, 6x6x3x3, 6 in the net' in message
    assert 'fc6 -> fc6_1: shapes 40x250, 40 in the file, 4x6x3x3, 4 in the net' in message
    assert_layers(net, before)  # all or nothing


def test_a_model_without_vgg_layers_is_refused(net, tmp_path):
    path = T.write_model(str(tmp_path / 'alexnet.caffemodel'), model_like(net, ['conv1_1']))
    with pytest.raises(
        SurgeryError,
        match=r'alexnet.caffemodel is not a DeepLab/VGG16 model: '
        r'no layer conv1_2, conv2_1',
    ):
        surgery.init_from_deeplab(net, path, log=lambda m: None)
    no_fc = T.write_model(str(tmp_path / 'no_fc.caffemodel'), model_like(net, VGG_LAYERS))
    with pytest.raises(SurgeryError, match=r'neither fc6_1, fc6_2, fc6_3, fc6_4 nor fc6'):
        surgery.init_from_deeplab(net, no_fc, log=lambda m: None)


GLOBAL = ['global_conv1', 'global_fc6', 'global_fc7']


def test_depthnet_init_copies_only_the_layers_that_fit(net, tmp_path):
    """DepthNet's model under its released names (netgen.DEPTHNET_LAYER_MAP): conv1 fits,
    fc-main has another input size, fc-depth is absent; each is logged with the reason and
    only conv1 is copied."""
    source = model_like(
        net,
        ['global_conv1', 'global_fc6'],
        rename={'global_conv1': 'conv1', 'global_fc6': 'fc-main'},
        shapes={'global_fc6': [(8, 200), (8,)]},
    )
    path = T.write_model(str(tmp_path / 'depthnet.caffemodel'), source)
    before = snapshot(net)
    lines = []
    copied = surgery.init_from_depthnet(net, path, GLOBAL, log=lines.append)
    assert copied == ['global_conv1']
    assert_layers(
        net, {'global_conv1': source['conv1'], 'global_fc6': before['global_fc6'], 'global_fc7': before['global_fc7']}
    )
    text = '\n'.join(lines)
    assert 'copied  global_conv1     <- conv1' in text
    assert 'skipped global_fc6       <- fc-main        shapes 8x200, 8 in the file, 8x100, 8 in the net' in text
    assert 'skipped global_fc7       <- -              no layer fc-depth or global_fc7 in the file' in text
    assert '1 layers copied, 2 skipped' in text


def test_depthnet_init_takes_our_names_too(net, tmp_path):
    source = model_like(net, ['global_conv1'])
    path = T.write_model(str(tmp_path / 'ours.caffemodel'), source)
    surgery.init_from_depthnet(net, path, GLOBAL, log=lambda m: None)
    assert_layers(net, {'global_conv1': source['global_conv1']})


def test_depthnet_targets():
    """A2 takes only its global net from DepthNet's model; DepthNet's stages every mapped
    layer that trains (the refine stage's frozen global/gradient nets come from earlier stages)."""

    class FakeNet:
        params = dict.fromkeys(
            ['conv1_1', 'global_conv1', 'global_fc7', 'refine_conv2', 'grad_conv1', 'gradient', 'fixed_up2_refine']
        )

    assert surgery.depthnet_targets(FakeNet, hybrid=True) == ['global_conv1', 'global_fc7']
    assert surgery.depthnet_targets(FakeNet, hybrid=False, frozen={'global_conv1', 'global_fc7'}) == [
        'refine_conv2',
        'grad_conv1',
        'gradient',
    ]
    with pytest.raises(SurgeryError, match="no layer DepthNet's model initialises"):
        surgery.init_from_depthnet(FakeNet, 'x.caffemodel', [], log=lambda m: None)


def test_legacy_4d_blobs_fit_their_squeezed_shapes(net, tmp_path):
    """V1-era caffemodels store an InnerProduct's W as 1 x 1 x out x in and b as 1 x 1 x 1 x out."""
    source = model_like(net, ['global_fc6'], rename={'global_fc6': 'fc-main'})
    path = T.write_model(str(tmp_path / 'v1.caffemodel'), source, legacy={'fc-main'})
    assert surgery.load_model(path)['fc-main'][0].shape == (1, 1, 8, 100)
    assert surgery.init_from_depthnet(net, path, GLOBAL, log=lambda m: None) == ['global_fc6']
    assert_layers(net, {'global_fc6': source['fc-main']})


def test_copy_shared_layers_by_name(net, tmp_path):
    source = model_like(net, ['conv2_1', 'global_fc7', 'fc8_3'])
    source['fixed_up2_x'] = [np.ones((1, 1, 3, 3), np.float32)]
    path = T.write_model(str(tmp_path / 'w.caffemodel'), source)
    before = snapshot(net)
    assert surgery.copy_shared_layers(net, path, log=lambda m: None) == [
        n for n in net.params if n in ('conv2_1', 'global_fc7', 'fc8_3')
    ]
    assert_layers(net, {n: source[n] for n in ('conv2_1', 'global_fc7', 'fc8_3')})
    assert_layers(net, {n: before[n] for n in net.params if n not in source})
    nothing = T.write_model(str(tmp_path / 'n.caffemodel'), {'other': [np.ones(1, np.float32)]})
    with pytest.raises(SurgeryError, match='n.caffemodel shares no layer name with the net'):
        surgery.copy_shared_layers(net, nothing, log=lambda m: None)


def test_unreadable_models_are_named(net, tmp_path):
    with pytest.raises(SurgeryError, match=r'missing.caffemodel: cannot read: No such file'):
        surgery.load_model(str(tmp_path / 'missing.caffemodel'))
    junk = tmp_path / 'junk.caffemodel'
    junk.write_bytes(b'\xff\xfe not a protobuf \x00' * 10)
    with pytest.raises(SurgeryError, match=r'junk.caffemodel: not a caffemodel'):
        surgery.load_model(str(junk))


def test_the_driver_initialises_and_warns_about_random_init(tmp_path, capsys):
    """The driver's initialise(): with --init-deeplab the VGG/ASPP layers are copied; without
    it (and without --init-depthnet for a net with both parts, A2) the run says loudly that it
    starts from random weights."""
    from tools import train
    from tools.training import run as training_run
    from tools.training.log import TrainLog, read_log

    net = T.make_net(T.mini_vgg_aspp(), str(tmp_path))
    stage = training_run.Stage('a2', None, ())
    log = TrainLog(str(tmp_path / 'train_log.jsonl'))
    args = train.parse_args(['--net', 'a2', '--dataset', 'cityscapes'])
    training_run.initialise(net, stage, args, str(tmp_path), [stage], log)
    err = capsys.readouterr().err
    assert 'RANDOM INIT: no --init-deeplab given' in err and 'RANDOM INIT: no --init-depthnet' in err
    assert 'NOT be comparable to the paper' in err
    source = model_like(net, list(VGG_LAYERS) + ['fc6_1', 'fc7_1'], rename={'fc6_1': 'fc6', 'fc7_1': 'fc7'})
    deeplab = T.write_model(str(tmp_path / 'd.caffemodel'), source)
    args = train.parse_args(['--net', 'a2', '--dataset', 'cityscapes', '--init-deeplab', deeplab])
    copied = training_run.initialise(net, stage, args, str(tmp_path), [stage], log)
    log.close()
    assert len(copied['deeplab']) == len(VGG_LAYERS) + 8
    assert 'no --init-deeplab' not in capsys.readouterr().err
    assert_layers(net, {'fc7_4': source['fc7'], 'conv5_3': source['conv5_3']})
    warnings = [r for r in read_log(str(tmp_path)) if r['event'] == 'warning']
    assert len(warnings) == 3  # twice the first time, once (DepthNet) the second
