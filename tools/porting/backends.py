"""The forward pass of each backend a ported net runs on, and how outputs are compared.

The error of a backend on an output blob is max |out - out_caffe| / max |out_caffe|
(`relative_error`); inputs are seeded Gaussians (`random_inputs`). Each `*_outputs`
function returns {blob: array}: pycaffe (`caffe_outputs`, `caffe_forward`), a torch module
(`pytorch_outputs`), a torch.export program (`program_outputs`), ONNX Runtime
(`onnx_outputs`), OpenCV's dnn (`opencv_outputs`).
Shared by `tools.porting.export` and `tools.porting.parity`.
"""

import numpy as np

from tools.core.protos import read_net


def relative_error(out, ref):
    """max |out - ref| / max |ref| (the absolute error when ref is all zeros)."""
    out, ref = np.asarray(out, np.float64), np.asarray(ref, np.float64)
    if out.shape != ref.shape:
        raise ValueError(f"shape {out.shape} differs from Caffe's {ref.shape}")
    scale = np.abs(ref).max() if ref.size else 0.0
    diff = np.abs(out - ref).max() if ref.size else 0.0
    return float(diff / scale) if scale > 0 else float(diff)


def random_inputs(shapes, seed=0, scale=1.0):
    """{input name: seeded Gaussian array}: unit scale keeps random-weight logits near a trained net's."""
    rng = np.random.default_rng(seed)
    return {name: (rng.standard_normal(shape, dtype=np.float32) * np.float32(scale)) for name, shape in shapes.items()}


def caffe_forward(net, inputs, blobs):
    """Forward of a live caffe.Net: {blob: array} for the named blobs."""
    for name, value in inputs.items():
        net.blobs[name].reshape(*value.shape)
        net.blobs[name].data[...] = value
    net.forward()
    return {name: net.blobs[name].data.copy() for name in blobs}


def caffe_outputs(prototxt, caffemodel, inputs, blobs):
    """pycaffe forward (TEST phase) with weights from a caffemodel: {blob: array}."""
    import caffe  # noqa: PLC0415 (each backend imports its engine only when used)

    return caffe_forward(caffe.Net(str(prototxt), str(caffemodel), caffe.TEST), inputs, blobs)


def pytorch_outputs(module, inputs):
    import torch  # noqa: PLC0415

    with torch.no_grad():
        out = module(*[torch.from_numpy(inputs[name]) for name in module.input_names])
    return {name: value.numpy() for name, value in out.items()}


def program_outputs(path, inputs):
    """A .pt2 file of torch.export (`tools.porting.export.export_pytorch`): {blob: array}."""
    import torch  # noqa: PLC0415

    program = torch.export.load(str(path)).module()
    with torch.no_grad():
        out = program(*[torch.from_numpy(value) for value in inputs.values()])
    return {name: value.numpy() for name, value in out.items()}


def onnx_outputs(onnx_path, inputs):
    import onnxruntime  # noqa: PLC0415

    session = onnxruntime.InferenceSession(str(onnx_path), providers=['CPUExecutionProvider'])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, inputs)))


def _producers(prototxt, blobs):
    """{blob: (name of the last layer writing it, top index)}: OpenCV addresses outputs by layer."""
    producers = {}
    for layer in read_net(prototxt).layer:
        for index, top in enumerate(layer.top):
            producers[top] = (layer.name, index)
    return {blob: producers[blob] for blob in blobs}


def opencv_outputs(prototxt, caffemodel, inputs, blobs):
    """cv2.dnn.readNetFromCaffe forward on the CPU in float32: {blob: array} for the named blobs."""
    import cv2  # noqa: PLC0415

    net = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    for name, value in inputs.items():
        net.setInput(value, name)
    producers = _producers(prototxt, blobs)
    layers = list(dict.fromkeys(layer for layer, _ in producers.values()))
    outputs = dict(zip(layers, net.forwardAndRetrieve(layers)))
    return {blob: outputs[layer][index] for blob, (layer, index) in producers.items()}
