"""Small nets, a toy data layer and caffemodel writers for the training and surgery tests.

No tests here. `ToyScenes` is a Caffe Python layer (module `tests.support.toy_scenes`, so the
repository root must be on PYTHONPATH of any subprocess) that draws scenes whose label and depth
follow from the colours, so that a few conv layers learn them in a few dozen steps. The nets
use netgen's loss blocks, so their loss tops are named and weighted as in the real nets.
"""

import json
import os
import sys
import time

import caffe
import numpy as np
from caffe import layers as L
from caffe import params as P
from caffe.proto import caffe_pb2

from netgen import blocks as B
from netgen.fixed_weights import write_fixed_blobs
from tests.support import ROOT as REPO
from tools.core import protos as caffemodel

MODULE = 'tests.support.toy_scenes'
#: Class colours (BGR, already centred and scaled to about +-1) and depths (m).
COLOURS = np.array([[0.6, 0.6, 0.6], [-0.4, -0.6, 0.8], [0.9, 0.2, -0.7]], np.float32)
DEPTHS = np.array([3.0, 8.0, 0.0], np.float32)  # class 2 has no valid depth (like the sky)


class ToyScenes(caffe.Layer):
    """Tops data (N x 3 x S x S), label (N x 1 x s x s), depth (N x 1 x d x d) of scenes made of
    three horizontal bands at random heights; param_str JSON: batch_size, size, label_size,
    depth_size, seed, sleep (seconds per batch, to slow a run down for the signal tests)."""

    def setup(self, bottom, top):
        self.p = json.loads(self.param_str)
        self.rng = np.random.RandomState(self.p['seed'])
        self.batches = 0

    def reshape(self, bottom, top):
        n, s = self.p['batch_size'], self.p['size']
        top[0].reshape(n, 3, s, s)
        top[1].reshape(n, 1, self.p['label_size'], self.p['label_size'])
        if len(top) > 2:
            top[2].reshape(n, 1, self.p['depth_size'], self.p['depth_size'])

    def scene(self):
        s = self.p['size']
        cuts = np.sort(self.rng.randint(1, s, 2))
        rows = np.digitize(np.arange(s), cuts)  # 0 top .. 2 bottom
        classes = np.repeat((2 - rows)[:, None], s, 1)  # bottom band class 0, top class 2
        image = COLOURS[classes].transpose(2, 0, 1) + 0.2 * self.rng.randn(3, s, s)
        depth = DEPTHS[classes] * (1 + 0.1 * np.linspace(1, 0, s)[:, None])
        return image, classes, depth

    def forward(self, bottom, top):
        s, ls = self.p['size'], self.p['label_size']
        for i in range(self.p['batch_size']):
            image, classes, depth = self.scene()
            top[0].data[i] = image
            top[1].data[i, 0] = classes[:: (s - 1) // (ls - 1), :: (s - 1) // (ls - 1)]
            if len(top) > 2:
                ds = self.p['depth_size']
                top[2].data[i, 0] = depth[:: (s - 1) // (ds - 1), :: (s - 1) // (ds - 1)]
        self.batches += 1
        if self.p.get('sleep'):
            time.sleep(self.p['sleep'])

    def backward(self, top, propagate_down, bottom):
        pass


class SkippingToyScenes(ToyScenes):
    """ToyScenes that can skip batches without drawing their pixels (the fast resume path)."""

    def skip_batches(self, count):
        self.skipped = count
        for _ in range(count * self.p['batch_size']):
            self.scene()
        self.batches += count


def toy_data(n, tops, batch_size=2, size=17, label_size=9, depth_size=9, seed=0, sleep=0.0, layer='ToyScenes'):
    param = dict(batch_size=batch_size, size=size, label_size=label_size, depth_size=depth_size, seed=seed, sleep=sleep)
    out = L.Python(ntop=len(tops), python_param=dict(module=MODULE, layer=layer, param_str=json.dumps(param)))
    for name, top in zip(tops, out):
        n[name] = top


def hybrid_net(seg_weight=1.0, **data):
    """A miniature of A1/A2: shared convs, a max pool and dropout, a class score `fc8` with
    `loss_seg`, a depth head with `loss_depth_abs` and `loss_depth_mvn` (netgen's blocks)."""
    n = caffe.NetSpec()
    toy_data(n, ('data', 'label', 'depth_gt'), **data)
    top = B.conv(n, 'conv1', n.data, 16, 3, pad=1, wf=dict(type='xavier'))
    top = B.max_pool(n, 'pool1', top, 3, 2, pad=1)
    top = B.conv(n, 'conv2', top, 16, 3, pad=1, wf=dict(type='xavier'))
    n.drop2 = L.Dropout(top, dropout_ratio=0.3, in_place=True)
    n.fc8 = L.Convolution(n.drop2, num_output=3, kernel_size=1, weight_filler=dict(type='xavier'))
    B.seg_loss(n, n.fc8, seg_weight)
    n.depth_out = L.Convolution(n.drop2, num_output=1, kernel_size=1, weight_filler=dict(type='xavier'))
    B.depth_losses(n, 'depth', n.depth_out, n.depth_gt)
    return n.to_proto()


def global_stage_net(frozen=False, n=None):
    """DepthNet's global stage in miniature: `global_*` layers, `loss_global_*`."""
    own = n is None
    n = n or caffe.NetSpec()
    if own:
        toy_data(n, ('data', 'label', 'depth_gt'), depth_size=5)
    param = B.FROZEN if frozen else B.LEARN
    top = B.conv(n, 'global_conv1', n.data, 8, 3, stride=2, pad=1, param=param, wf=dict(type='xavier'))
    top = B.max_pool(n, 'global_pool1', top, 3, 2, pad=1)
    n.global_fc6 = L.InnerProduct(top, num_output=16, param=param, weight_filler=dict(type='xavier'))
    n.global_fc7 = L.InnerProduct(n.global_fc6, num_output=25, param=param, weight_filler=dict(type='xavier'))
    n.depth_global = L.Reshape(n.global_fc7, shape=dict(dim=[0, 1, 5, 5]))
    if own:
        B.depth_losses(n, 'global', n.depth_global, n.depth_gt)
        return n.to_proto()
    return n.depth_global


def gradient_stage_net(frozen=False, n=None):
    """DepthNet's gradient stage in miniature: `grad_*` layers, Prewitt targets (a `fixed_`
    layer), `loss_gradient_mvn`."""
    own = n is None
    n = n or caffe.NetSpec()
    if own:
        toy_data(n, ('data', 'label', 'depth_gt'), depth_size=5)
    param = B.FROZEN if frozen else B.LEARN
    top = B.conv(n, 'grad_conv1', n.data, 8, 3, stride=2, pad=1, param=param, wf=dict(type='xavier'))
    top = B.max_pool(n, 'grad_pool1', top, 3, 2, pad=1)
    n.gradient = L.Convolution(top, num_output=2, kernel_size=3, pad=1, param=param, weight_filler=dict(type='xavier'))
    if own:
        B.gradient_loss(n, 'gradient', n.gradient, n.depth_gt)
        return n.to_proto()
    return n.gradient


def refine_stage_net():
    """DepthNet's refine stage in miniature: the two frozen nets, a refining conv on them."""
    n = caffe.NetSpec()
    toy_data(n, ('data', 'label', 'depth_gt'), depth_size=5)
    glob = global_stage_net(frozen=True, n=n)
    grad = gradient_stage_net(frozen=True, n=n)
    n.refine_concat = L.Concat(glob, grad, axis=1)
    n.refine_conv1 = L.Convolution(
        n.refine_concat, num_output=1, kernel_size=3, pad=1, weight_filler=dict(type='xavier')
    )
    B.depth_losses(n, 'depth', n.refine_conv1, n.depth_gt)
    return n.to_proto()


def write_solver(directory, name, net_proto, base_lr=0.01, lr_policy='poly', max_iter=40, snapshot=0, extra=''):
    """`directory`/<name>.prototxt (the solver) and <name>_train.prototxt; returns the solver."""
    os.makedirs(directory, exist_ok=True)
    net_path = os.path.join(directory, name + '_train.prototxt')
    write_fixed_blobs(net_proto)  # fixed layers carry their weights, as in the generated nets
    with open(net_path, 'w') as f:
        f.write(str(net_proto))
    path = os.path.join(directory, name + '.prototxt')
    with open(path, 'w') as f:
        f.write(
            'train_net: "%s"\nbase_lr: %g\nlr_policy: "%s"\npower: 0.9\nmax_iter: %d\n'
            'momentum: 0.9\nweight_decay: 0.0005\nsnapshot: %d\ndisplay: 10\n'
            'snapshot_prefix: "unused"\n%s' % (net_path, base_lr, lr_policy, max_iter, snapshot, extra)
        )
    return path


def mini_vgg_aspp(num_classes=3, global_net=True):
    """Input + layers named like DeepLab's VGG16 + ASPP (conv1_1..conv5_3, fc6_i, fc7_i, fc8_i)
    and, optionally, a global depth net (global_conv1, global_fc6, global_fc7): tiny widths."""
    from tools.training.surgery import VGG_LAYERS

    n = caffe.NetSpec()
    n.data = L.Input(input_param=dict(shape=[dict(dim=[1, 3, 9, 9])]))
    top, width = n.data, 2
    for name in VGG_LAYERS:
        width = min(2 * int(name[4]), 6)
        top = B.conv(n, name, top, width, 3, pad=1)
    scores = []
    for i in (1, 2, 3, 4):
        t = B.conv(n, 'fc6_%d' % i, top, 4, 3, pad=i, dilation=i)
        t = B.conv(n, 'fc7_%d' % i, t, 4, 1)
        scores.append(B.conv(n, 'fc8_%d' % i, t, num_classes, 1, relu=False))
    n.fc8 = L.Eltwise(*scores, operation=P.Eltwise.SUM)
    if global_net:
        t = B.conv(n, 'global_conv1', n.data, 4, 3, stride=2, pad=1, lrn=False)
        n.global_fc6 = L.InnerProduct(t, num_output=8, weight_filler=dict(type='gaussian', std=0.1))
        n.global_fc7 = L.InnerProduct(n.global_fc6, num_output=5, weight_filler=dict(type='gaussian', std=0.1))
    return n.to_proto()


def make_net(proto, directory, name='net', phase=caffe.TEST):
    path = os.path.join(directory, name + '.prototxt')
    write_fixed_blobs(proto)
    with open(path, 'w') as f:
        f.write(str(proto))
    return caffe.Net(path, phase)


def known_values(shape, offset):
    """Distinct, recognisable values: offset + 0.001 * index."""
    return (offset + 0.001 * np.arange(int(np.prod(shape)))).reshape(shape).astype(np.float32)


def write_model(path, layers, legacy=()):
    """A caffemodel holding `layers` ({name: [arrays]}) and nothing else; layers named in
    `legacy` store their blobs with the old num/channels/height/width fields (4-D)."""
    model = caffe_pb2.NetParameter()
    model.name = 'made-by-the-test'
    for name, arrays in layers.items():
        layer = model.layer.add()
        layer.name, layer.type = name, 'Convolution'
        for array in arrays:
            blob = layer.blobs.add()
            if name in legacy:
                dims = (1,) * (4 - array.ndim) + array.shape
                blob.num, blob.channels, blob.height, blob.width = dims
            else:
                blob.shape.dim.extend(array.shape)
            caffemodel.set_blob_data(blob, array)
    with open(path, 'wb') as f:
        f.write(model.SerializeToString())
    return path


def subprocess_env():
    env = dict(os.environ, PYTHONPATH=REPO, GLOG_minloglevel='2')
    return env


def train_command(*args):
    return [sys.executable, '-m', 'tools.train', '--quiet', '--no-plot'] + list(args)
