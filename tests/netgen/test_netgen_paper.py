"""The checked-in nets in real Caffe, and the paper's numbers read back from them.

Every file under prototxt/ is parsed with caffe_pb2 + text_format and built by Caffe
(`caffe.Net`; the HybridData layer of train/test nets swapped for an Input layer with the
shapes its param_str declares, fillers set to constant so that loading is quick; no
forward pass here: tests/test_netgen_nets.py runs forward and backward). The tests named
in docs/FIDELITY.md's audit table are here: each asserts the paper's literal numbers
against Caffe's blobs, parameter shapes, layer types, topology and loss weights, or
against fields of the parsed files; none reads netgen's constants.
"""

import functools
import json
import os

import caffe
import numpy as np
import pytest
from caffe.proto import caffe_pb2
from google.protobuf import text_format

import netgen
from netgen.fixed_weights import check_fixed_weights

pytestmark = pytest.mark.slow
caffe.set_mode_cpu()

from tests.support import ROOT  # noqa: E402

CLASSES = {'cityscapes': 19, 'sunrgbd': 37, 'nyuv2': 40}  # paper L342, L450, L529
CITY = 'cityscapes'
TRAINABLE = ('a1', 'a2', 'deeplab_aspp', 'depthnet_global', 'depthnet_gradient', 'depthnet_refine')
VGG16 = [
    ('conv1_1', 64, 3),
    ('conv1_2', 64, 64),
    ('conv2_1', 128, 64),
    ('conv2_2', 128, 128),
    ('conv3_1', 256, 128),
    ('conv3_2', 256, 256),
    ('conv3_3', 256, 256),
    ('conv4_1', 512, 256),
    ('conv4_2', 512, 512),
    ('conv4_3', 512, 512),
    ('conv5_1', 512, 512),
    ('conv5_2', 512, 512),
    ('conv5_3', 512, 512),
]
#: DepthNet's released model (janivanecky/Depth-Estimation, net_deploy.prototxt): its
#: global net's conv weight shapes (AlexNet, groups 2 in conv2, conv4, conv5).
DEPTHNET_GLOBAL_CONVS = {
    'conv1': (96, 3, 11, 11),
    'conv2': (256, 48, 5, 5),
    'conv3': (384, 256, 3, 3),
    'conv4': (384, 192, 3, 3),
    'conv5': (256, 192, 3, 3),
}


def rel(net, phase, dataset=CITY):
    return netgen.paths(net, dataset)[phase]


@functools.lru_cache(maxsize=None)
def parsed(path):
    """The checked-in file at `path` (relative to the repo), parsed."""
    msg = caffe_pb2.SolverParameter() if path.startswith('solvers') else caffe_pb2.NetParameter()
    with open(os.path.join(ROOT, path)) as f:
        text_format.Merge(f.read(), msg)
    return msg


def layer(proto, name):
    found = [l for l in proto.layer if l.name == name]
    assert len(found) == 1, name
    return found[0]


def data_params(proto):
    data = proto.layer[0]
    assert data.type == 'Python' and data.python_param.layer == 'HybridData'
    return json.loads(data.python_param.param_str)


def loadable(proto, batch=None):
    """Copy of `proto` that Caffe loads without a database: HybridData -> Input with the
    tops its param_str declares (batch `batch` if given), constant fillers."""
    p = caffe_pb2.NetParameter()
    p.CopyFrom(proto)
    if p.layer[0].type == 'Python':
        params = data_params(p)
        b, c = batch or params['batch_size'], params['crop_size']
        shapes = [[b, 3, c, c]]
        if params['label_size']:
            shapes.append([b, 1, params['label_size'], params['label_size']])
        shapes += [[b, 1, s, s] for s in params['depth_sizes']]
        data = p.layer[0]
        data.type = 'Input'
        data.ClearField('python_param')
        for s in shapes:
            data.input_param.shape.add().dim.extend(s)
    for l in p.layer:
        for field in ('convolution_param', 'inner_product_param'):
            if l.HasField(field):
                for filler in ('weight_filler', 'bias_filler'):
                    f = getattr(getattr(l, field), filler)
                    f.Clear()
                    f.type = 'constant'
    return p


def caffe_net(tmp_dir, proto, phase):
    path = os.path.join(str(tmp_dir), proto.name + '.prototxt')
    with open(path, 'w') as f:
        f.write(str(proto))
    return caffe.Net(path, phase)


@pytest.fixture(scope='module')
def tmp_dir(tmp_path_factory):
    return tmp_path_factory.mktemp('paper')


@pytest.fixture(scope='module')
def nets(tmp_dir):
    """Checked-in Cityscapes nets built by Caffe, once per module: load(net, phase)."""
    cache = {}

    def load(net, phase):
        key = (net, phase)
        if key in cache:
            cache[key] = cache.pop(key)  # most recently used last
        else:
            if len(cache) >= 2:  # up to ~0.5 GB each: keep 2
                cache.pop(next(iter(cache)))
            proto = parsed(netgen.paths(net, CITY)[phase])
            cache[key] = (
                proto,
                caffe_net(tmp_dir, loadable(proto, batch=1), caffe.TRAIN if phase == 'train' else caffe.TEST),
            )
        return cache[key]

    yield load
    cache.clear()


def shape(net, blob):
    return tuple(net.blobs[blob].data.shape)


def graph(net):
    """Caffe's layers in order as (name, type, bottoms, tops), without the Split layers
    Caffe inserts where a blob feeds several layers (bottoms name the split blob)."""
    if not hasattr(net, '_graph'):
        origin, out = {}, []
        for name, l in zip(net._layer_names, net.layers):
            bottoms = [origin.get(b, b) for b in net.bottom_names[name]]
            if l.type == 'Split':
                origin.update((t, bottoms[0]) for t in net.top_names[name])
            else:
                out.append((name, l.type, bottoms, list(net.top_names[name])))
        net._graph = out
    return net._graph


def names(net):
    return [g[0] for g in graph(net)]


def bottoms(net, name):
    return next(g[2] for g in graph(net) if g[0] == name)


def next_layer(net, name, k=1):
    """(name, type, bottoms, tops) of the layer k places after `name` (Splits skipped)."""
    return graph(net)[names(net).index(name) + k]


def consumers(net, blob):
    return [g[0] for g in graph(net) if blob in g[2]]


# --- every net loads; contracts -----------------------------------------------------------


def same_but_dataset(path, reference):
    """True if the net at `path` equals `reference` but for its name and its data layer's
    database path and depth bound (`config.MAX_DEPTH`, asserted here)."""

    def normalised(p):
        proto = caffe_pb2.NetParameter()
        proto.CopyFrom(parsed(p))
        proto.ClearField('name')
        if proto.layer[0].type == 'Python':
            params = data_params(proto)
            params['source'] = None
            dataset = os.path.basename(os.path.dirname(p)).rsplit('_', 1)[1]
            assert params.pop('max_depth', netgen.config.MAX_DEPTH[dataset]) == netgen.config.MAX_DEPTH[dataset], p
            proto.layer[0].python_param.param_str = json.dumps(params, sort_keys=True)
        return proto

    return normalised(path) == normalised(reference)


def test_every_net_of_every_dataset_loads_in_caffe(tmp_dir):
    """All train, test and deploy nets (and the joint DepthNet deploy net) of every dataset
    load in pycaffe; data tops, deploy outputs and loss tops have the contract shapes.
    DepthNet's nets do not depend on the classes: those of SUN-RGBD and NYUv2 are asserted
    to be Cityscapes' but for the dataset's name (database path, net name), so Caffe loads
    each once (a third of the parameters loaded here)."""
    loaded = 0
    for ds in netgen.DATASETS:
        k = CLASSES[ds]
        files = {rel(net, phase, ds): phase for net in TRAINABLE for phase in ('train', 'test', 'deploy')}
        assert netgen.paths('depthnet', ds)['deploy'] in files  # = depthnet_refine's
        for path, phase in sorted(files.items()):
            if ds != CITY and os.path.basename(os.path.dirname(path)).startswith('depthnet'):
                assert same_but_dataset(path, path.replace(ds, CITY)), path
                continue
            proto = parsed(path)
            n = caffe_net(tmp_dir, loadable(proto), caffe.TRAIN if phase == 'train' else caffe.TEST)
            loaded += 1
            # the zoom and Prewitt kernels come from the prototxt alone (its blobs), not a driver
            fixed = [layer.name for layer in proto.layer if layer.name.startswith('fixed_')]
            assert check_fixed_weights(n) == fixed, path
            assert all(np.abs(n.params[name][0].data).min() > 0 or 'prewitt' in name for name in fixed), path
            b = n.blobs['data'].data.shape[0]
            assert shape(n, 'data') == (b, 3, 321, 321), path
            if phase == 'deploy':
                want = {
                    'seg_prob': (1, k, 41, 41),
                    'depth': (1, 1, 81, 81),
                    'depth_global': (1, 1, 41, 41),
                    'gradient': (1, 2, 41, 41),
                }
                assert n.inputs == ['data'] and n.outputs, path
                for out in n.outputs:
                    assert shape(n, out) == want[out], (path, out)
            else:
                assert b == (7 if phase == 'train' else 1), path
                if 'label' in n.blobs:
                    assert shape(n, 'label') == (b, 1, 41, 41)
                for size in (41, 81):
                    if 'depth_gt_%d' % size in n.blobs:
                        assert shape(n, 'depth_gt_%d' % size) == (b, 1, size, size)
                assert n.outputs and all(o.startswith('loss_') for o in n.outputs), path
                assert all(shape(n, o) == () for o in n.outputs), path
            del n
    assert loaded == 18 + 2 * 9


# --- paper section 4.1, 4.2: the architecture -------------------------------------------


def test_input_321(nets):
    """Paper L257 ("an input image with size 321 by 321"); crop 321 (L307-308 say 320:
    docs/FIDELITY.md, "Crop")."""
    for net in ('a1', 'a2', 'deeplab_aspp', 'depthnet'):
        proto = parsed(netgen.paths(net, CITY)['deploy'])
        assert list(proto.layer[0].input_param.shape[0].dim) == [1, 3, 321, 321]
    _, n = nets('a2', 'deploy')
    assert shape(n, 'data') == (1, 3, 321, 321)
    for ds in netgen.DATASETS:
        for net in TRAINABLE:
            for phase in ('train', 'test'):
                assert data_params(parsed(rel(net, phase, ds)))['crop_size'] == 321


def test_vgg16_feature_net(nets):
    """Paper L275-280: 5 groups of 3 x 3 convs, each + ReLU, pooling after each group
    (DeepLab-v2's strides: 321 -> 161 -> 81 -> 41 -> 41 -> 41)."""
    proto, n = nets('a2', 'deploy')
    convs = [l for l in names(n) if l.startswith('conv') and '_' in l]
    assert convs == [name for name, _, _ in VGG16]
    for name, cout, cin in VGG16:
        assert n.params[name][0].data.shape == (cout, cin, 3, 3), name
        assert next_layer(n, name)[1:] == ('ReLU', [name], [name]), name
    for g, last in enumerate(('conv1_2', 'conv2_2', 'conv3_3', 'conv4_3', 'conv5_3'), 1):
        assert next_layer(n, last, 2)[:3] == ('pool%d' % g, 'Pooling', [last])
        assert layer(proto, 'pool%d' % g).pooling_param.kernel_size == 3
    sides = [shape(n, 'pool%d' % g)[2] for g in range(1, 6)]
    assert sides == [161, 81, 41, 41, 41]
    assert [layer(proto, 'conv5_%d' % i).convolution_param.dilation[0] for i in (1, 2, 3)] == [2, 2, 2]


def test_score_map_41(nets):
    """Paper L255-257, L290-291: the class score map is 41 x 41 (1/8 of 321), softmax
    over K classes."""
    for net in ('a1', 'a2', 'deeplab_aspp'):
        _, n = nets(net, 'deploy')
        assert shape(n, 'pool5') == (1, 512, 41, 41)
        assert shape(n, 'fc8') == shape(n, 'seg_prob') == (1, 19, 41, 41)
        assert n.layer_dict['seg_prob'].type == 'Softmax'
        assert bottoms(n, 'seg_prob') == ['fc8']


def test_aspp_rates_and_branches(nets):
    """Paper L281-291: four parallel branches of three convs, the first atrous with rates
    6, 12, 18, 24, the other two 1 x 1; outputs summed. 1024 channels in fc6/fc7
    (DeepLab-v2's ASPP-L)."""
    proto, n = nets('a2', 'train')
    rates = []
    for i in (1, 2, 3, 4):
        cp = layer(proto, 'fc6_%d' % i).convolution_param
        rates.append(cp.dilation[0])
        assert cp.pad[0] == cp.dilation[0] and cp.kernel_size[0] == 3
        assert bottoms(n, 'fc6_%d' % i) == ['pool5']
        assert n.params['fc6_%d' % i][0].data.shape == (1024, 512, 3, 3)
        assert n.params['fc7_%d' % i][0].data.shape == (1024, 1024, 1, 1)
        assert n.params['fc8_%d' % i][0].data.shape == (19, 1024, 1, 1)
        for j in (6, 7):
            assert shape(n, 'fc%d_%d' % (j, i)) == (1, 1024, 41, 41)
            drop = layer(proto, 'drop%d_%d' % (j, i))
            assert drop.dropout_param.dropout_ratio == pytest.approx(0.5)  # parent
    assert rates == [6, 12, 18, 24]
    assert n.layer_dict['fc8'].type == 'Eltwise'
    assert bottoms(n, 'fc8') == ['fc8_1', 'fc8_2', 'fc8_3', 'fc8_4']
    assert layer(proto, 'fc8').eltwise_param.operation == caffe_pb2.EltwiseParameter.SUM


def alexnet_trunk(proto, n, prefix):
    """Asserts paper L244-251 on the `prefix` net: 5 convs, each + ReLU, LRN after conv1
    and conv2 (DepthNet's, which A2 loads "without changes", L233; after all five with
    `LRN_EVERY_CONV`, L247: docs/FIDELITY.md, "LRN"), max pool 3 x 3 / 2 after conv1 and
    conv5 only. Returns the conv weight shapes."""
    convs = ['%s_conv%d' % (prefix, i) for i in range(1, 6)]
    assert [l for l in names(n) if l.startswith(prefix + '_conv')] == convs
    for i, c in enumerate(convs, 1):
        assert n.layer_dict[c].type == 'Convolution'
        assert next_layer(n, c)[1:] == ('ReLU', [c], [c]), c
        name, kind, below, _ = next_layer(n, c, 2)
        if i > 2:  # DepthNet's trunk: no LRN after conv3-5
            assert (kind, below) != ('LRN', [c]), c
            continue
        assert (kind, below) == ('LRN', [c]), c
        lrn = layer(proto, name).lrn_param
        assert (lrn.local_size, lrn.alpha, lrn.beta) == (5, pytest.approx(1e-4), pytest.approx(0.75))
    pools = [l for l in names(n) if l.startswith(prefix + '_') and n.layer_dict[l].type == 'Pooling']
    assert pools == ['%s_pool1' % prefix, '%s_pool5' % prefix]
    assert bottoms(n, pools[0]) == ['norm_%s_conv1' % prefix]
    assert bottoms(n, pools[1]) == ['%s_conv5' % prefix]
    for p in pools:
        pp = layer(proto, p).pooling_param
        assert (pp.pool, pp.kernel_size) == (caffe_pb2.PoolingParameter.MAX, 3)
    return [n.params[c][0].data.shape for c in convs], pools


def test_global_depth_net(nets):
    """Paper L244-257: 5 conv + 2 fully connected layers (AlexNet); ReLU and LRN after
    each conv; max pooling 3 x 3, stride 2 after the first and the last conv; fc 1024,
    fc 1681 reshaped to 41 x 41."""
    proto, n = nets('a2', 'deploy')
    convs, pools = alexnet_trunk(proto, n, 'global')
    assert [layer(proto, p).pooling_param.stride for p in pools] == [2, 2]
    fcs = [l for l in names(n) if n.layer_dict[l].type == 'InnerProduct']
    assert fcs == ['global_fc6', 'global_fc7']
    assert bottoms(n, 'global_fc6') == ['global_pool5']
    assert shape(n, 'global_fc6') == (1, 1024) and shape(n, 'global_fc7') == (1, 1681)
    assert next_layer(n, 'global_fc6')[1] == 'ReLU'
    assert n.layer_dict['depth_global'].type == 'Reshape'
    assert bottoms(n, 'depth_global') == ['global_fc7']
    assert shape(n, 'depth_global') == (1, 1, 41, 41)


def test_gradient_net(nets):
    """Paper L258-259: the global net's architecture without the fully connected layers;
    two output maps (x and y gradients), 41 x 41 (docs/FIDELITY.md, "Gradient net")."""
    proto, n = nets('depthnet', 'deploy')
    gconvs, _ = alexnet_trunk(proto, n, 'global')
    convs, pools = alexnet_trunk(proto, n, 'grad')
    assert convs == gconvs  # the same conv layers
    assert not [l for l in names(n) if l.startswith('grad') and n.layer_dict[l].type == 'InnerProduct']
    assert bottoms(n, 'gradient') == ['grad_pool5']
    assert shape(n, 'gradient') == (1, 2, 41, 41)


def test_refining_net(nets):
    """Paper L260-268: conv1 on the image + ReLU + LRN + max pool, concatenated with the
    global depth and gradient (A2: VGG) outputs, four more convs each + ReLU (the last
    one linear: docs/FIDELITY.md), the 5th conv's output the refined depth, 81 x 81.
    41 -> 81: fixed bilinear Deconvolution k3 s2 p1 (docs/FIDELITY.md, "41 -> 81")."""
    contexts = {'depthnet': ['global_map', 'gradient'], 'a2': ['global_map', 'pool5'], 'a1': ['pool5']}
    for net, context in contexts.items():
        proto, n = nets(net, 'deploy')
        assert bottoms(n, 'refine_conv1') == ['data']
        assert [next_layer(n, 'refine_conv1', k)[1] for k in (1, 2, 3)] == ['ReLU', 'LRN', 'Pooling']
        assert layer(proto, 'refine_pool1').pooling_param.pool == caffe_pb2.PoolingParameter.MAX
        assert shape(n, 'refine_pool1') == (1, 96, 81, 81)
        up = 'fixed_up2_refine'
        assert bottoms(n, 'refine_concat') == ['refine_pool1', up]
        channels = sum(shape(n, b)[1] for b in context)
        if len(context) > 1:
            assert bottoms(n, bottoms(n, up)[0]) == context
        else:
            assert bottoms(n, up) == context
        assert n.layer_dict[up].type == 'Deconvolution'
        cp = layer(proto, up).convolution_param
        assert (cp.kernel_size[0], cp.stride[0], cp.pad[0], cp.group) == (3, 2, 1, channels)
        assert n.params[up][0].data.shape == (channels, 1, 3, 3)
        assert shape(n, up) == (1, channels, 81, 81)
        for i in (2, 3, 4):
            c = 'refine_conv%d' % i
            assert next_layer(n, c)[1:] == ('ReLU', [c], [c]), (net, c)
        # the 5th conv's output is the depth: linear, as DepthNet's (FIDELITY.md)
        assert next_layer(n, 'refine_conv5')[:3] == ('depth', 'Power', ['refine_conv5'])
        assert n.params['refine_conv2'][0].data.shape == (64, 96 + channels, 5, 5)
        assert n.params['refine_conv5'][0].data.shape == (1, 64, 3, 3)
        # conv4 in two groups, as DepthNet's conv4-refine ("without changes", L233)
        assert layer(proto, 'refine_conv4').convolution_param.group == 2
        assert n.params['refine_conv4'][0].data.shape == (64, 32, 5, 5)
        assert bottoms(n, 'depth') == ['refine_conv5']
        assert shape(n, 'depth') == (1, 1, 81, 81)


def test_a1_and_a2_composition(nets):
    """Paper L209-236: A1 shares the VGG features between ASPP and the refining net and
    has no global or gradient net; A2 keeps DepthNet's global net for depth, the VGG
    features replace the gradient net. A1 has fewer parameters (L216-217)."""
    _, a1 = nets('a1', 'deploy')
    assert not [l for l in names(a1) if l.startswith(('global', 'grad'))]
    assert set(a1.outputs) == {'seg_prob', 'depth'}
    assert consumers(a1, 'pool5') == ['fc6_1', 'fc6_2', 'fc6_3', 'fc6_4', 'fixed_up2_refine']
    count1 = sum(b.data.size for bs in a1.params.values() for b in bs)
    _, a2 = nets('a2', 'deploy')
    assert not [l for l in names(a2) if l.startswith('grad')]
    assert [l for l in names(a2) if l.startswith('global_conv')]
    assert set(a2.outputs) == {'seg_prob', 'depth', 'depth_global'}
    assert 'refine_context' in consumers(a2, 'pool5')
    count2 = sum(b.data.size for bs in a2.params.values() for b in bs)
    print('\nparameters (Cityscapes deploy): A1 %s, A2 %s' % (format(count1, ','), format(count2, ',')))
    assert count1 < count2


def test_layer_names_transplant(nets):
    """Paper L297-304: VGG and ASPP from DeepLab's model (by its names conv1_1..conv5_3,
    fc6_1..fc6_4, fc7_1..fc7_4; fc8_* fresh), A2's global net from DepthNet's model
    (its conv1..conv5 and fc layers; our names map through netgen.DEPTHNET_LAYER_MAP)."""
    _, n = nets('a2', 'deploy')
    for i in (1, 2, 3, 4):
        assert n.params['fc6_%d' % i][0].data.shape == (1024, 512, 3, 3)
        assert n.params['fc7_%d' % i][0].data.shape == (1024, 1024, 1, 1)
    assert all(n.params[name][0].data.shape == (cout, cin, 3, 3) for name, cout, cin in VGG16)
    m = netgen.DEPTHNET_LAYER_MAP
    ours = {m_: o for o, m_ in m.items() if o.startswith('global_')}
    assert sorted(ours) == ['conv1', 'conv2', 'conv3', 'conv4', 'conv5', 'fc-depth', 'fc-main']
    for theirs, shape_ in DEPTHNET_GLOBAL_CONVS.items():
        assert n.params[ours[theirs]][0].data.shape == shape_, theirs
    assert bottoms(n, ours['fc-depth']) == [ours['fc-main']]
    _, d = nets('depthnet', 'deploy')
    assert set(m) <= set(d.params)  # every mapped name is a DepthNet layer


def test_random_init_filler():
    """Paper L299-300, L303-304: the parts no model initialises are Gaussian, zero mean
    (std 0.01: docs/FIDELITY.md, "Random init", says why not sqrt(0.1))."""
    for net in ('a1', 'a2'):
        proto = parsed(rel(net, 'train'))
        for i in range(1, 6):
            f = layer(proto, 'refine_conv%d' % i).convolution_param.weight_filler
            assert (f.type, f.mean, f.std) == ('gaussian', 0, pytest.approx(0.01))
    proto = parsed(rel('a2', 'train'))  # A2's global fc layers: DepthNet's do not fit at 321
    for name in ('global_fc6', 'global_fc7'):
        f = layer(proto, name).inner_product_param.weight_filler
        assert (f.type, f.mean, f.std) == ('gaussian', 0, pytest.approx(0.01)), name


#: What initialises what (paper L297-304; tools/training/surgery.py): DeepLab's model the VGG
#: feature net and fc6_i / fc7_i, DepthNet's model A2's global convs and, in DepthNet's own
#: stages, every layer `DEPTHNET_LAYER_MAP` names (`--init-depthnet`); the refine stage
#: also loads the first two stages' weights (its frozen global and gradient nets).
DEEPLAB_INIT = {c for c, _, _ in VGG16} | {'fc%d_%d' % (f, i) for f in (6, 7) for i in (1, 2, 3, 4)}


def initialised(net):
    if net in ('a1', 'deeplab_aspp'):
        return DEEPLAB_INIT
    if net == 'a2':
        return DEEPLAB_INIT | {'global_conv%d' % i for i in range(1, 6)}
    done = set(netgen.DEPTHNET_LAYER_MAP)
    if net == 'depthnet_refine':
        done |= {l.name for l in parsed(rel(net, 'train')).layer if l.name.startswith(('global_', 'grad'))}
    return done


def test_no_random_layer_is_frozen():
    """Paper L305: "all of its components are trained". In every train net of every dataset,
    a learned layer that nothing initialises trains at >= 0.1 x the solver's rate (weights
    and biases); slow multipliers only on layers a model initialises."""
    for ds in netgen.DATASETS:
        for net in TRAINABLE:
            proto = parsed(rel(net, 'train', ds))
            for l in proto.layer:
                if not l.param or l.name.startswith('fixed_') or l.name in initialised(net):
                    continue
                assert min(p.lr_mult for p in l.param) >= 0.1, (ds, net, l.name, [p.lr_mult for p in l.param])
    refine1 = layer(parsed(rel('a2', 'train')), 'refine_conv1')
    assert [p.lr_mult for p in refine1.param] == [1, 2]  # was DepthNet's 0.001: a frozen random bank


# --- paper section 4.3: training -----------------------------------------------------------


def test_hybrid_loss(nets):
    """Paper L310-325: LH = 1000 LS + (LDabs + LDmvn); LS softmax cross-entropy with
    unlabeled pixels (255) ignored; LDabs Euclidean on depth, LDmvn Euclidean after
    mean-variance normalisation of both maps. LDabs weight 0.01: DepthNet's 10 m unit
    (docs/FIDELITY.md, "Loss units"). The baselines use the same weights (L362-365)."""
    want = {
        'a1': {'loss_seg': 1000, 'loss_depth_abs': 0.01, 'loss_depth_mvn': 1},
        'a2': {'loss_seg': 1000, 'loss_depth_abs': 0.01, 'loss_depth_mvn': 1},
        'deeplab_aspp': {'loss_seg': 1000},
    }
    for net, weights in want.items():
        proto, n = nets(net, 'train')
        got = {b: w for b, w in n.blob_loss_weights.items() if w}
        assert got == pytest.approx(weights), net
        assert n.layer_dict['loss_seg'].type == 'SoftmaxWithLoss'
        assert bottoms(n, 'loss_seg') == ['fc8', 'label']
        lp = layer(proto, 'loss_seg').loss_param
        assert lp.ignore_label == 255
        assert lp.normalization == caffe_pb2.LossParameter.VALID
        if net == 'deeplab_aspp':
            continue
        assert n.layer_dict['loss_depth_abs'].type == 'EuclideanLoss'
        assert bottoms(n, 'loss_depth_abs') == ['depth_masked', 'depth_gt_81']
        assert bottoms(n, 'depth_masked') == ['depth', 'depth_valid']
        assert bottoms(n, 'depth_valid') == ['depth_gt_81']
        assert n.layer_dict['loss_depth_mvn'].type == 'EuclideanLoss'
        assert bottoms(n, 'loss_depth_mvn') == ['depth_mvn', 'depth_gt_mvn']
        assert n.layer_dict['depth_mvn'].type == n.layer_dict['depth_gt_mvn'].type == 'MVN'
        assert bottoms(n, 'depth_mvn') == ['depth_masked']
        assert bottoms(n, 'depth_gt_mvn') == ['depth_gt_81']
    stages = {
        'depthnet_global': {'loss_global_abs': 0.01, 'loss_global_mvn': 1},
        'depthnet_gradient': {'loss_gradient_mvn': 1},
        'depthnet_refine': {'loss_depth_abs': 0.01, 'loss_depth_mvn': 1},
    }
    for net, weights in stages.items():
        proto = parsed(rel(net, 'train'))
        got = {l.top[0]: l.loss_weight[0] for l in proto.layer if l.loss_weight}
        assert got == pytest.approx(weights), net


def test_depth_loss_units(tmp_dir):
    """The depth losses of the checked-in A2 train net, run on known maps: `depth` and
    the ground truth are metres and loss_weight 0.01 = (1 / 10 m)^2 is the only unit
    conversion, so the weighted LDabs is DepthNet's Euclidean loss in 10 m units (no
    double scaling); invalid pixels (ground truth 0) add nothing."""
    proto = parsed(rel('a2', 'train'))
    names = ('depth_valid', 'depth_masked', 'loss_depth_abs', 'depth_mvn', 'depth_gt_mvn', 'loss_depth_mvn')
    p = caffe_pb2.NetParameter(name='depth_losses')
    inp = p.layer.add(name='inputs', type='Input', top=['depth', 'depth_gt_81'])
    for _ in range(2):
        inp.input_param.shape.add().dim.extend([1, 1, 81, 81])
    for name in names:
        p.layer.add().CopyFrom(layer(proto, name))
    n = caffe_net(tmp_dir, p, caffe.TRAIN)
    gt = np.full((81, 81), 20.0)
    gt[:, 70:] = 0  # invalid columns
    n.blobs['depth_gt_81'].data[0, 0] = gt
    n.blobs['depth'].data[0, 0] = np.where(gt > 0, gt + 3.0, 55.0)  # 3 m off where valid
    out = n.forward()
    valid = int((gt > 0).sum())
    assert out['loss_depth_abs'] == pytest.approx(valid * 3.0**2 / 2, rel=1e-5)
    weighted = n.blob_loss_weights['loss_depth_abs'] * out['loss_depth_abs']
    assert weighted == pytest.approx(valid * (3.0 / 10) ** 2 / 2, rel=1e-5)
    assert out['loss_depth_mvn'] == pytest.approx(0, abs=1e-3)  # same pattern, scaled


def test_solvers_hold_the_paper_values():
    """Paper L305-309: 100K iterations, lr 2.5e-6, poly decay, momentum 0.9, weight decay
    0.005, batch 7, random crop (321: docs/FIDELITY.md). L362-365: the baselines trained
    "with the same training configuration" (the 'hybrid' baseline recipe)."""
    for ds in netgen.DATASETS:
        for net in TRAINABLE:
            path = rel(net, 'solver', ds)
            s = parsed(path)
            assert s.base_lr == pytest.approx(2.5e-6), path
            assert (s.lr_policy, s.max_iter) == ('poly', 100000), path
            assert s.power == pytest.approx(0.9), path
            assert s.momentum == pytest.approx(0.9), path
            assert s.weight_decay == pytest.approx(0.005), path
            assert not s.HasField('iter_size') or s.iter_size == 1
            assert s.train_net == rel(net, 'train', ds)
            assert list(s.test_net) == [rel(net, 'test', ds)]
            train = data_params(parsed(s.train_net))
            assert (train['batch_size'], train['crop_size']) == (7, 321), path
            assert train['train'] and train['mirror']
