"""Port a HybridNet caffemodel to PyTorch, ONNX or NumPy, and PyTorch/NumPy weights back to Caffe.

    python -m tools.export --net a1 --dataset cityscapes --weights a1.caffemodel --to pytorch
    python -m tools.export --net a1 --dataset cityscapes --weights a1.caffemodel --to onnx
    python -m tools.export --net a1 --dataset cityscapes --weights a1.caffemodel --to npz
    python -m tools.export --net a1 --dataset cityscapes --weights a1.pt --to caffemodel [--template a1.caffemodel]

pytorch: the module's state_dict (`torch.save`), keys `<caffe layer>.weight` / `.bias` in
Caffe's blob shapes; `tools.export.load_pytorch(file, net=, dataset=)` rebuilds the module.
onnx: the same module at opset ONNX_OPSET, checked against the module with ONNX Runtime.
npz: the same arrays under the same keys. caffemodel: weights (.pt state_dict or .npz)
written back, by pycaffe from the deploy net, or into a copy of --template (e.g. the training
caffemodel) with only the blob values replaced. OpenCV's dnn reads deploy prototxt +
caffemodel directly (docs/PORTING.md); `python -m tools.parity` measures every backend.
"""
import argparse
import os
import sys
import warnings

import numpy as np
import torch
from torch import nn

from tools import caffemodel as cm
from tools.caffe_to_torch import CaffeNet, UnsupportedLayerError

ONNX_OPSET = 18
FORMATS = ("pytorch", "onnx", "npz", "caffemodel")
SUFFIX = {"pytorch": ".pt", "onnx": ".onnx", "npz": ".npz", "caffemodel": ".caffemodel"}
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def deploy_prototxt(net, dataset):
    """Path of the generated deploy net of `net` for `dataset` (netgen's layout)."""
    import netgen
    return netgen.paths(net, dataset, root=REPO_ROOT)["deploy"]


def _resolve_prototxt(prototxt, net, dataset):
    if prototxt is not None:
        return prototxt
    if net is None or dataset is None:
        raise ValueError("give a prototxt, or both net and dataset")
    return deploy_prototxt(net, dataset)


def read_weights(path, module):
    """{caffe layer: [arrays]} from a .caffemodel, an .npz of ours or a torch state_dict file."""
    if str(path).endswith(".caffemodel"):
        return cm.layer_blobs(cm.read_caffemodel(path))
    if str(path).endswith(".npz"):
        with np.load(path) as arrays:
            state = {key: arrays[key] for key in arrays.files}
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    return module.state_dict_to_caffe_blobs(state)


def load_pytorch(weights=None, prototxt=None, *, net=None, dataset=None):
    """The deploy net as a torch module in eval mode, weights from a caffemodel, .pt or .npz file."""
    module = CaffeNet(cm.read_prototxt(_resolve_prototxt(prototxt, net, dataset))).eval()
    if weights is not None:
        module.load_caffe_blobs(read_weights(weights, module))
    return module


def export_pytorch(module, out):
    torch.save(module.state_dict(), out)


def export_npz(module, out):
    np.savez(out, **{key: value.numpy() for key, value in module.state_dict().items()})


class _TupleOutputs(nn.Module):
    """The net with its outputs as a tuple in `output_names` order (what ONNX export wants)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, *inputs):
        out = self.net(*inputs)
        return tuple(out[name] for name in self.net.output_names)


def export_onnx(module, out, opset=ONNX_OPSET):
    """ONNX model of the module (fixed input shapes of the deploy net), one self-contained file."""
    import onnx
    example = tuple(torch.zeros(module.input_shapes[name]) for name in module.input_names)
    with warnings.catch_warnings():  # torch's exporter trips over its own pytree deprecation
        warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
        torch.onnx.export(_TupleOutputs(module).eval(), example, out, input_names=module.input_names,
                          output_names=module.output_names, opset_version=opset, dynamo=True,
                          external_data=False, verbose=False)
    onnx.checker.check_model(out)
    return out


def check_onnx(module, onnx_path, seed=0):
    """{output: relative error of ONNX Runtime vs the torch module} on a seeded random input."""
    from tools.parity import onnx_outputs, pytorch_outputs, random_inputs, relative_error
    inputs = random_inputs({n: module.input_shapes[n] for n in module.input_names}, seed)
    reference = pytorch_outputs(module, inputs)
    got = onnx_outputs(onnx_path, inputs)
    return {name: relative_error(got[name], reference[name]) for name in module.output_names}


def export_caffemodel(module, prototxt, out, template=None):
    """Write the module's weights as a caffemodel: into a copy of `template` or via pycaffe."""
    blobs = module.state_dict_to_caffe_blobs(module.state_dict())
    if template is not None:
        net = cm.replace_blobs(cm.read_caffemodel(template), blobs)
        with open(out, "wb") as f:
            f.write(net.SerializeToString())
        return out
    import caffe
    net = caffe.Net(str(prototxt), caffe.TEST)
    for name, arrays in blobs.items():
        for blob, array in zip(net.params[name], arrays):
            blob.data[...] = array.reshape(blob.data.shape)
    net.save(str(out))
    return out


def _parser():
    parser = argparse.ArgumentParser(prog="python -m tools.export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--net", help="a1, a2, deeplab_aspp, depthnet (or a DepthNet stage)")
    parser.add_argument("--dataset", help="cityscapes, sunrgbd or nyuv2")
    parser.add_argument("--prototxt", help="any deploy prototxt instead of --net/--dataset")
    parser.add_argument("--weights", required=True,
                        help="a .caffemodel (to pytorch/onnx/npz) or a .pt/.npz (to caffemodel)")
    parser.add_argument("--to", required=True, choices=FORMATS)
    parser.add_argument("--out", help="output file (default: the weights' name with the format's suffix)")
    parser.add_argument("--template", help="to caffemodel: copy this caffemodel, replacing only blob values")
    parser.add_argument("--opset", type=int, default=ONNX_OPSET, help="ONNX opset (default %(default)s)")
    return parser


def main(argv=None):
    parser = _parser()
    args = parser.parse_args(argv)
    if args.prototxt is None and (args.net is None or args.dataset is None):
        parser.error("give --net and --dataset, or --prototxt")
    from_caffe = args.weights.endswith(".caffemodel")
    if from_caffe == (args.to == "caffemodel"):
        parser.error("--to caffemodel takes .pt/.npz weights; the other formats take a .caffemodel")
    if args.template and args.to != "caffemodel":
        parser.error("--template only applies to --to caffemodel")
    out = args.out or os.path.splitext(args.weights)[0] + SUFFIX[args.to]
    try:
        prototxt = _resolve_prototxt(args.prototxt, args.net, args.dataset)
        module = load_pytorch(args.weights, prototxt)
        if args.to == "pytorch":
            export_pytorch(module, out)
        elif args.to == "npz":
            export_npz(module, out)
        elif args.to == "onnx":
            export_onnx(module, out, args.opset)
            for name, err in check_onnx(module, out).items():
                print(f"ONNX Runtime vs PyTorch, {name}: max relative error {err:.1e}")
        else:
            export_caffemodel(module, prototxt, out, args.template)
    except (UnsupportedLayerError, KeyError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
