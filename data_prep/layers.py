"""`HybridData`, the Caffe Python layer that feeds the train and test nets (docs/DESIGN.md).

    layer { name: "data" type: "Python" top: "data" top: "label" top: "depth"
            python_param { module: "data_prep.layers" layer: "HybridData"
                           param_str: '{"source": "data/cityscapes/train", "batch_size": 7, "crop_size": 321,
                                        "label_size": 41, "depth_sizes": [81], "seed": 1}' } }

Tops in order: data, label (if label_size), one depth per depth_sizes entry. Batches come from
`data_prep.batches.CropSampler` (crop, pad, flips, corner-aligned subsampling, BGR mean), built
ahead by `workers` forked processes; a crop decompresses only the LMDB tiles it touches
(`data_prep.database`).
"""

import caffe

from data_prep.batches import BatchWorkers, CropSampler, parse_param_str
from data_prep.database import open_database


class HybridData(caffe.Layer):
    """Image, label and depth batches from a `data_prep` database; see the module docstring."""

    def setup(self, bottom, top):
        if len(bottom):
            raise ValueError('HybridData takes no bottoms')
        params = parse_param_str(self.param_str)
        sampler = CropSampler(open_database(params['source']), params)
        self.shapes = sampler.top_shapes()
        if len(top) != len(self.shapes):
            raise ValueError(
                f'HybridData: param_str asks for {len(self.shapes)} tops (data'
                f'{", label" if params["label_size"] is not None else ""}'
                f'{", depth" * len(params["depth_sizes"])}) but the layer has {len(top)}'
            )
        self.batches = BatchWorkers(sampler, params['workers'])

    def reshape(self, bottom, top):
        for i, shape in enumerate(self.shapes):
            top[i].reshape(*shape)

    def forward(self, bottom, top):
        for i, array in enumerate(self.batches.next()):
            top[i].data[...] = array

    def backward(self, top, propagate_down, bottom):
        pass
