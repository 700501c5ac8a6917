"""The databases a run reads must hold the dataset and the classes its net is made for.

Evaluation refuses a database of another dataset; training must too: a 19-class Cityscapes net
fed NYUv2's 40-class labels trains without an error and learns nothing useful. Checked from the
manifest (`data_prep.database.read_manifest`) and the run's train net, before Caffe builds it:
the manifest's `dataset` against `--dataset`, and, where the net segments (a `loss_seg` top),
the manifest's class count against the class scores the net computes. Depth-only nets
(DepthNet's stages) get the dataset check only.
"""

from data_prep.database import read_manifest
from tools.core import ToolError
from tools.core.protos import read_net

SEG_LOSS = 'loss_seg'
#: Layers whose output has as many channels as their first input.
_SAME_CHANNELS = {
    'ReLU',
    'Dropout',
    'Eltwise',
    'Interp',
    'Crop',
    'Scale',
    'BatchNorm',
    'Power',
    'Softmax',
    'Split',
    'TanH',
    'Sigmoid',
    'AbsVal',
}
_WITH_OUTPUTS = {'Convolution': 'convolution_param', 'Deconvolution': 'convolution_param'}


def _producer(layers, blob, before):
    for index in range(before - 1, -1, -1):
        if blob in layers[index].top:
            return index
    return None


def seg_classes(net):
    """The number of class scores `loss_seg` reads in `net` (a NetParameter), None when the net
    does not segment or the count cannot be read from its layers."""
    layers = list(net.layer)
    loss = next((i for i, layer in enumerate(layers) if SEG_LOSS in layer.top), None)
    if loss is None or not layers[loss].bottom:
        return None
    blob, index = layers[loss].bottom[0], loss
    for _ in range(len(layers)):
        index = _producer(layers, blob, index)
        if index is None:
            return None
        layer = layers[index]
        if layer.type in _WITH_OUTPUTS:
            return getattr(layer, _WITH_OUTPUTS[layer.type]).num_output
        if layer.type == 'InnerProduct':
            return layer.inner_product_param.num_output
        if layer.type not in _SAME_CHANNELS or not layer.bottom:
            return None
        blob = layer.bottom[0]
    return None


def check_databases(sources, dataset, train_net_path):
    """Raise ToolError naming the database and both values when a database in `sources` holds
    another dataset than `dataset` (None: not checked) or another class count than the train
    net at `train_net_path` scores."""
    classes = seg_classes(read_net(train_net_path))
    for source in sources:
        manifest = read_manifest(source)
        held = manifest.get('dataset')
        if dataset and held != dataset:
            raise ToolError(
                'database %s holds dataset %r, but the net is trained for %r (--dataset): give --data the '
                '%s database root' % (source, held, dataset, dataset)
            )
        count = manifest.get('num_classes')
        if classes and count and count != classes:
            raise ToolError(
                'database %s has %d classes (dataset %r), but the net %s scores %d classes'
                % (source, count, held, train_net_path, classes)
            )
