"""Numerical parity of the ported nets against pycaffe (docs/PORTING.md).

`measure` runs pycaffe and each backend (pytorch, onnx, opencv; `tools.porting.backends`) on
the same seeded input; `randomize_weights` fills a pycaffe net with seeded Gaussian weights so
parity can be measured without trained weights. `python -m tools.parity` is the command line.
"""

import os
import tempfile

import numpy as np

from tools.core import ToolError
from tools.porting.backends import (
    caffe_forward,
    caffe_outputs,
    onnx_outputs,
    opencv_outputs,
    pytorch_outputs,
    random_inputs,
    relative_error,
)

BACKENDS = ('pytorch', 'onnx', 'opencv')
TOLERANCE = 1e-4


def randomize_weights(net, seed=0, bias_std=0.1):
    """Seeded Gaussian weights in a caffe.Net: std sqrt(2 / fan in) for weights, bias_std for biases.

    fan in is the count of a weight blob over its first axis (Convolution, InnerProduct) or
    second (Deconvolution, which stores input channels first). `fixed_*` layers keep the
    weights the prototxt gives them (netgen.fixed_weights)."""
    rng = np.random.default_rng(seed)
    for name, layer in zip(net._layer_names, net.layers):
        if name.startswith('fixed_'):
            continue
        for index, blob in enumerate(layer.blobs):
            shape = blob.data.shape
            if index == 0 and len(shape) > 1:
                fan_axis = 1 if layer.type == 'Deconvolution' else 0
                fan_in = blob.data.size // shape[fan_axis]
                std = np.sqrt(2.0 / fan_in)
            else:
                std = bias_std
            blob.data[...] = rng.standard_normal(shape, dtype=np.float32) * np.float32(std)


def measure(prototxt, caffemodel, backends=BACKENDS, seed=0, reference_net=None):
    """{backend: {output blob: relative error}} on one seeded random input.

    The reference is pycaffe with the caffemodel, or `reference_net` (a live caffe.Net holding
    the same weights) when given."""
    from tools.porting import export  # noqa: PLC0415 (torch and onnx load only when measured)

    module = export.load_pytorch(caffemodel, prototxt=prototxt)
    inputs = random_inputs({n: module.input_shapes[n] for n in module.input_names}, seed)
    if reference_net is not None:
        reference = caffe_forward(reference_net, inputs, module.output_names)
    else:
        reference = caffe_outputs(prototxt, caffemodel, inputs, module.output_names)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for backend in backends:
            if backend == 'pytorch':
                out = pytorch_outputs(module, inputs)
            elif backend == 'onnx':
                path = os.path.join(tmp, 'net.onnx')
                export.export_onnx(module, path)
                out = onnx_outputs(path, inputs)
            elif backend == 'opencv':
                out = opencv_outputs(prototxt, caffemodel, inputs, module.output_names)
            else:
                raise ToolError(f'unknown backend {backend!r}; choose from {", ".join(BACKENDS)}')
            results[backend] = {name: relative_error(out[name], reference[name]) for name in reference}
    return results


def random_net(prototxt, seed=0):
    """A caffe.Net of `prototxt` (TEST) with `randomize_weights` (its fixed weights: the prototxt's)."""
    import caffe  # noqa: PLC0415

    net = caffe.Net(str(prototxt), caffe.TEST)
    randomize_weights(net, seed)
    return net


def format_table(results):
    lines = ['| backend | blob | max relative error |', '| --- | --- | --- |']
    for backend, errors in results.items():
        lines += [f'| {backend} | `{blob}` | {err:.1e} |' for blob, err in errors.items()]
    return '\n'.join(lines)
