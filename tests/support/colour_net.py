"""Shared by the test_evaluate*.py files (holds no tests): small deploy-like nets and in-memory databases.

The colour-coded net follows the deploy contract (input `data` N x 3 x 321 x 321 BGR minus
the mean; `seg_prob` N x K x 41 x 41; `depth` N x 1 x 81 x 81) and predicts what a scene
made by `colour_scene` holds: class 0 / 1 / 2 where blue / green / red dominates, depth
1 + blue / 50 metres. Any wiring fault (channel order, mean, tile offsets, transposes)
shows up as a low score.
"""

import caffe
import numpy as np
from caffe import layers as L
from caffe import params as P

from data_prep.dataset import Record
from netgen import config

BRIGHT, DIM = 200, 30
#: RGB colour of classes 0, 1, 2 (blue, green, red dominant).
CLASS_RGB = np.array([(DIM, DIM, BRIGHT), (DIM, BRIGHT, DIM), (BRIGHT, DIM, DIM)], np.uint8)


def colour_net_spec(num_classes=19, segmentation=True, depth=True, depth_layer='depth'):
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 3, config.INPUT_SIZE, config.INPUT_SIZE]))
    if segmentation:  # 321 -> 41: 8 x 8 average, ceil mode
        n.pool8 = L.Pooling(n.data, pool=P.Pooling.AVE, kernel_size=8, stride=8)
        n.score = L.Convolution(n.pool8, num_output=num_classes, kernel_size=1)
        n.seg_prob = L.Softmax(n.score)
    if depth:  # 321 -> 81
        n.pool4 = L.Pooling(n.data, pool=P.Pooling.AVE, kernel_size=4, stride=4)
        n[depth_layer] = L.Convolution(n.pool4, num_output=1, kernel_size=1)
        if depth_layer != 'depth':
            n.depth = L.Power(n[depth_layer])
    return n.to_proto()


def write_colour_net(directory, name='deploy', **options):
    """deploy prototxt and a caffemodel whose weights implement the colour code."""
    deploy = directory / ('%s.prototxt' % name)
    deploy.write_text(str(colour_net_spec(**options)))
    net = caffe.Net(str(deploy), caffe.TEST)
    if 'score' in net.params:
        weight, bias = net.params['score']
        weight.data[...] = 0
        bias.data[...] = -1000  # classes 3.. never win
        for label, channel in enumerate((0, 1, 2)):  # B, G, R of the BGR input
            weight.data[label, channel] = 0.05
            bias.data[label] = 0
    for name_ in ('depth', 'depth_conv'):
        if name_ in net.params:
            weight, bias = net.params[name_]
            weight.data[...] = 0
            weight.data[0, 0] = 1 / 50  # blue
            bias.data[...] = config.MEAN_BGR[0] / 50 + 1
    weights = directory / ('%s.caffemodel' % name)
    net.save(str(weights))
    return deploy, weights


def colour_scene(height, width, seed, block=96):
    """An RGB image of coloured blocks, its label map and its depth (1 + blue / 50)."""
    rng = np.random.default_rng(seed)
    classes = rng.integers(0, 3, (height // block + 1, width // block + 1))
    label = np.kron(classes, np.ones((block, block), np.int64))[:height, :width].astype(np.uint8)
    image = CLASS_RGB[label] + rng.integers(0, 20, (height, width, 3)).astype(np.uint8)
    depth = (1 + image[:, :, 2] / 50).astype(np.float32)
    label[rng.random(label.shape) < 0.02] = 255
    depth[rng.random(depth.shape) < 0.02] = 0
    return image, label, depth


class MemoryDatabase:
    """The part of data_prep.database.Database the evaluator uses, held in memory."""

    def __init__(self, records, labelled=True, class_names=None, source_root=''):
        self.records, self.labelled = records, labelled
        self.class_names = class_names
        self.manifest = {'source_root': str(source_root)}
        self.path = '<memory>'

    def __len__(self):
        return len(self.records)

    def __getitem__(self, index):
        return self.records[index]


def colour_database(sizes, labelled=True, names=None, gt_files=None):
    records = []
    for i, (height, width) in enumerate(sizes):
        image, label, depth = colour_scene(height, width, seed=i)
        name = names[i] if names else 'scene%d' % i
        sources = ['leftImg8bit/val/x/%s_leftImg8bit.png' % name if names else '%s.png' % name]
        if gt_files:
            sources.append(str(gt_files[i]))
        records.append(Record(image, label if labelled else None, depth, sources))
    return MemoryDatabase(records, labelled)
