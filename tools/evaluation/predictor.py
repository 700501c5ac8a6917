"""The paper's inference on whole images through a deploy net (L349-357, L456-461).

- `load_net(deploy, weights, gpu)`: the deploy net in TEST phase with checked weights
  (`check_weights`: every learned layer present with its shapes, else `ToolError`).
- `Predictor`: 321 x 321 inputs forwarded in batches; `predict_tiled` covers the image with
  the minimum number of tiles (`tools.evaluation.tiling`), the more confident tile's label
  winning in overlaps and depth averaged; `predict_resized` resizes to the input and back.
41 x 41 scores and 81 x 81 depth reach the target size by corner-aligned bilinear upsampling.
"""

from pathlib import Path

import caffe
import cv2
import numpy as np

from netgen import config
from netgen.fixed_weights import PREFIX as FIXED_PREFIX
from netgen.fixed_weights import check_fixed_weights
from tools.core import ToolError, protos, use_device
from tools.evaluation.backends import CaffeBackend
from tools.evaluation.tiling import TileMerger, pad_to_tile, tile_origins, upsample

#: Deploy blob of each task (docs/DESIGN.md).
HEADS = {'segmentation': 'seg_prob', 'depth': 'depth'}
RESIZE_INTERPOLATION = {'area': cv2.INTER_AREA, 'linear': cv2.INTER_LINEAR, 'cubic': cv2.INTER_CUBIC}
DEFAULT_BATCH = 7  # 28 Cityscapes tiles = 4 forwards


def check_weights(net, model, weights):
    """Raise ToolError unless `model` (the parsed caffemodel `weights`) holds every
    learned layer of `net` with the right blob count and shapes (Caffe would leave a missing
    layer at its random init silently, and abort the process on a wrong shape). `fixed_*`
    layers may be absent: the prototxt holds their weights (netgen.fixed_weights). Returns the names of layers
    with blobs in the file but not in the net (ignored, as Caffe does)."""
    saved = {
        layer.name: [protos.blob_shape(b) for b in layer.blobs]
        for layer in protos.all_layers(model)
        if len(layer.blobs)
    }
    missing, wrong = [], []
    for name, blobs in net.params.items():
        if name not in saved:
            if not name.startswith(FIXED_PREFIX):
                missing.append(name)
            continue
        wanted = [tuple(b.data.shape) for b in blobs]
        if len(saved[name]) != len(wanted) or not all(map(protos.shape_fits, saved[name], wanted)):
            wrong.append('%s: file %s, net %s' % (name, saved[name], wanted))
    if missing or wrong:
        problems = []
        if missing:
            problems.append('layers missing from the file: %s' % ', '.join(missing))
        if wrong:
            problems.append('layers with other shapes: %s' % '; '.join(wrong))
        raise ToolError('weights %s do not fit the net (%s)' % (weights, '. '.join(problems)))
    return sorted(set(saved) - set(net.params))


def load_net(deploy, weights=None, gpu=None):
    """The deploy net in TEST phase with `weights` (checked first) or, when None, its
    fillers' random weights; the fixed (non-learned) weights come from the prototxt and are
    checked in both cases."""
    deploy = Path(deploy)
    if not deploy.is_file():
        raise ToolError('no deploy net at %s (generate the nets with `python -m netgen`)' % deploy)
    if weights is not None and not Path(weights).is_file():
        raise ToolError('no weights file at %s' % weights)
    use_device(gpu)
    net = caffe.Net(str(deploy), caffe.TEST)
    if weights is not None:
        model = protos.read_caffemodel(weights)
        check_weights(net, model, weights)
        blobs = protos.layer_blobs(model)
        protos.copy_blobs(net, {name: blobs[name] for name in net.params if name in blobs}, weights)
    check_fixed_weights(net)
    return net


class Predictor:
    """Forwards 321 x 321 RGB inputs through a deploy net in batches; predicts whole images
    by tiling or by resizing. Outputs: H x W int32 labels and/or H x W float32 depth.
    `net`: a backend of `tools.evaluation.backends` (Caffe, ONNX Runtime, PyTorch), or a
    caffe.Net (run by Caffe)."""

    def __init__(self, net, tasks, batch_size=DEFAULT_BATCH, tile=config.INPUT_SIZE, resize_interpolation='area'):
        self.backend = net if hasattr(net, 'run') else CaffeBackend(net)
        self.tasks, self.batch_size, self.tile = tuple(tasks), batch_size, tile
        self.interpolation = RESIZE_INTERPOLATION[resize_interpolation]
        self.mean_bgr = np.asarray(config.MEAN_BGR, np.float32)

    def preprocess(self, image):
        """H x W x 3 uint8 RGB -> H x W x 3 float32 BGR minus the mean (0 = mean colour)."""
        return image[:, :, ::-1].astype(np.float32) - self.mean_bgr

    def forward(self, inputs):
        """N x tile x tile x 3 preprocessed inputs -> {blob: N x C x h x w} for the tasks' heads."""
        outputs = {HEADS[task]: [] for task in self.tasks}
        for start in range(0, len(inputs), self.batch_size):
            batch = inputs[start : start + self.batch_size].transpose(0, 3, 1, 2)
            result = self.backend.run(batch, list(outputs))
            for name in outputs:
                outputs[name].append(result[name])
        return {name: np.concatenate(parts) for name, parts in outputs.items()}

    def predict_tiled(self, image):
        """Paper L349-357: tiles, batched forwards, confidence / mean merge."""
        height, width = image.shape[:2]
        padded = pad_to_tile(self.preprocess(image), self.tile, 0)
        origins = tile_origins(height, width, self.tile)
        tiles = np.stack([padded[y : y + self.tile, x : x + self.tile] for y, x in origins])
        outputs = self.forward(tiles)
        merger = TileMerger(height, width, self.tile)
        for i, (y, x) in enumerate(origins):
            if 'segmentation' in self.tasks:
                merger.add_segmentation(y, x, outputs['seg_prob'][i])
            if 'depth' in self.tasks:
                merger.add_depth(y, x, outputs['depth'][i])
        return (
            merger.label() if 'segmentation' in self.tasks else None,
            merger.depth() if 'depth' in self.tasks else None,
        )

    def predict_resized(self, image):
        """Paper L456-461: resize to the input size, predict, resize back."""
        height, width = image.shape[:2]
        resized = cv2.resize(image, (self.tile, self.tile), interpolation=self.interpolation)
        outputs = self.forward(self.preprocess(resized)[None])
        label = depth = None
        if 'segmentation' in self.tasks:
            label = upsample(outputs['seg_prob'][0], height, width).argmax(0).astype(np.int32)
        if 'depth' in self.tasks:
            depth = upsample(outputs['depth'][0], height, width)[0]
        return label, depth
