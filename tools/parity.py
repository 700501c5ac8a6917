"""Numerical parity of the ported nets against pycaffe.

The error of a backend on an output blob is max |out - out_caffe| / max |out_caffe|.
`measure` runs pycaffe and each backend (pytorch, onnx, opencv) on the same seeded input;
`randomize_weights` fills a pycaffe net with seeded Gaussian weights so parity can be
measured without trained weights.

    python -m tools.parity --net a1 --dataset cityscapes [--weights W.caffemodel]

prints the table of errors (random weights when --weights is not given).
"""
import argparse
import os
import sys
import tempfile

import numpy as np

BACKENDS = ("pytorch", "onnx", "opencv")
TOLERANCE = 1e-4
#: Caffe's ReadProtoFromBinaryFile refuses larger files (and aborts the process):
#: A2's caffemodel (about 550 MB) can be written by Caffe but not read back.
CAFFE_READ_LIMIT = 536870912


def relative_error(out, ref):
    """max |out - ref| / max |ref| (the absolute error when ref is all zeros)."""
    out, ref = np.asarray(out, np.float64), np.asarray(ref, np.float64)
    if out.shape != ref.shape:
        raise ValueError(f"shape {out.shape} differs from Caffe's {ref.shape}")
    scale = np.abs(ref).max() if ref.size else 0.0
    diff = np.abs(out - ref).max() if ref.size else 0.0
    return float(diff / scale) if scale > 0 else float(diff)


def randomize_weights(net, seed=0, bias_std=0.1):
    """Seeded Gaussian weights in a caffe.Net: std sqrt(2 / fan in) for weights, bias_std for biases.

    fan in is the count of a weight blob over its first axis (Convolution, InnerProduct) or
    second (Deconvolution, which stores input channels first). Call
    `netgen.fixed_weights.fill_fixed_weights(net)` afterwards for fixed layers."""
    rng = np.random.default_rng(seed)
    for name, layer in zip(net._layer_names, net.layers):
        for index, blob in enumerate(layer.blobs):
            shape = blob.data.shape
            if index == 0 and len(shape) > 1:
                fan_axis = 1 if layer.type == "Deconvolution" else 0
                fan_in = blob.data.size // shape[fan_axis]
                std = np.sqrt(2.0 / fan_in)
            else:
                std = bias_std
            blob.data[...] = rng.standard_normal(shape, dtype=np.float32) * np.float32(std)


def random_inputs(shapes, seed=0, scale=1.0):
    """{input name: seeded Gaussian array}: unit scale keeps random-weight logits near a trained net's."""
    rng = np.random.default_rng(seed)
    return {name: (rng.standard_normal(shape, dtype=np.float32) * np.float32(scale))
            for name, shape in shapes.items()}


def caffe_forward(net, inputs, blobs):
    """Forward of a live caffe.Net: {blob: array} for the named blobs."""
    for name, value in inputs.items():
        net.blobs[name].reshape(*value.shape)
        net.blobs[name].data[...] = value
    net.forward()
    return {name: net.blobs[name].data.copy() for name in blobs}


def caffe_outputs(prototxt, caffemodel, inputs, blobs):
    """pycaffe forward (TEST phase) with weights from a caffemodel: {blob: array}."""
    import caffe
    if os.path.getsize(caffemodel) > CAFFE_READ_LIMIT:
        raise ValueError(f"{caffemodel} is over {CAFFE_READ_LIMIT} bytes: Caffe cannot read it")
    return caffe_forward(caffe.Net(str(prototxt), str(caffemodel), caffe.TEST), inputs, blobs)


def pytorch_outputs(module, inputs):
    import torch
    with torch.no_grad():
        out = module(*[torch.from_numpy(inputs[name]) for name in module.input_names])
    return {name: value.numpy() for name, value in out.items()}


def onnx_outputs(onnx_path, inputs):
    import onnxruntime
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, inputs)))


def _producers(prototxt, blobs):
    """{blob: (name of the last layer writing it, top index)}: OpenCV addresses outputs by layer."""
    from tools.caffemodel import read_prototxt
    producers = {}
    for layer in read_prototxt(prototxt).layer:
        for index, top in enumerate(layer.top):
            producers[top] = (layer.name, index)
    return {blob: producers[blob] for blob in blobs}


def opencv_outputs(prototxt, caffemodel, inputs, blobs):
    """cv2.dnn.readNetFromCaffe forward on the CPU in float32: {blob: array} for the named blobs."""
    import cv2
    net = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    for name, value in inputs.items():
        net.setInput(value, name)
    producers = _producers(prototxt, blobs)
    layers = list(dict.fromkeys(layer for layer, _ in producers.values()))
    outputs = dict(zip(layers, net.forwardAndRetrieve(layers)))
    return {blob: outputs[layer][index] for blob, (layer, index) in producers.items()}


def measure(prototxt, caffemodel, backends=BACKENDS, seed=0, reference_net=None):
    """{backend: {output blob: relative error}} on one seeded random input.

    The reference is pycaffe with the caffemodel, or `reference_net` (a live caffe.Net holding
    the same weights) when given."""
    from tools import export
    module = export.load_pytorch(caffemodel, prototxt=prototxt)
    inputs = random_inputs({n: module.input_shapes[n] for n in module.input_names}, seed)
    if reference_net is not None:
        reference = caffe_forward(reference_net, inputs, module.output_names)
    else:
        reference = caffe_outputs(prototxt, caffemodel, inputs, module.output_names)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for backend in backends:
            if backend == "pytorch":
                out = pytorch_outputs(module, inputs)
            elif backend == "onnx":
                path = os.path.join(tmp, "net.onnx")
                export.export_onnx(module, path)
                out = onnx_outputs(path, inputs)
            elif backend == "opencv":
                out = opencv_outputs(prototxt, caffemodel, inputs, module.output_names)
            else:
                raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
            results[backend] = {name: relative_error(out[name], reference[name]) for name in reference}
    return results


def random_net(prototxt, seed=0):
    """A caffe.Net of `prototxt` (TEST) with `randomize_weights` + the fixed weights."""
    import caffe
    from netgen.fixed_weights import fill_fixed_weights
    net = caffe.Net(str(prototxt), caffe.TEST)
    randomize_weights(net, seed)
    fill_fixed_weights(net)
    return net


def format_table(results):
    lines = ["| backend | blob | max relative error |", "| --- | --- | --- |"]
    for backend, errors in results.items():
        lines += [f"| {backend} | `{blob}` | {err:.1e} |" for blob, err in errors.items()]
    return "\n".join(lines)


def main(argv=None):
    from tools.export import deploy_prototxt
    parser = argparse.ArgumentParser(prog="python -m tools.parity", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--net", required=True, help="a1, a2, deeplab_aspp, depthnet, ...")
    parser.add_argument("--dataset", required=True, help="cityscapes, sunrgbd or nyuv2")
    parser.add_argument("--weights", help="caffemodel (default: seeded random weights)")
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated: %(default)s")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    prototxt = deploy_prototxt(args.net, args.dataset)
    backends = args.backends.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        if args.weights:
            try:
                results = measure(prototxt, args.weights, backends, args.seed)
            except (ValueError, KeyError, FileNotFoundError) as err:
                print(f"error: {err}", file=sys.stderr)
                return 1
        else:
            net = random_net(prototxt, args.seed)
            net.save(os.path.join(tmp, "random.caffemodel"))
            results = measure(prototxt, os.path.join(tmp, "random.caffemodel"), backends, args.seed, net)
    print(format_table(results))
    worst = max(err for errors in results.values() for err in errors.values())
    print(f"worst {worst:.1e} (tolerance {TOLERANCE:.0e})")
    return 0 if worst <= TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
