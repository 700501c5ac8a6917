"""Port a HybridNet caffemodel to PyTorch, ONNX or NumPy, and PyTorch/NumPy weights back to Caffe.

`python -m tools.export` is the command line. pytorch: the module's state_dict (`torch.save`),
keys `<caffe layer>.weight` / `.bias` in Caffe's blob shapes; `load_pytorch(file, net=, dataset=)`
rebuilds the module.
onnx: the same module at opset ONNX_OPSET, checked against the module with ONNX Runtime.
npz: the same arrays under the same keys. caffemodel: weights (.pt state_dict or .npz)
written back, by pycaffe from the deploy net, or into a copy of --template (e.g. the training
caffemodel) with only the blob values replaced. OpenCV's dnn reads deploy prototxt +
caffemodel directly (docs/PORTING.md); `python -m tools.parity` measures every backend.
"""

import warnings

import numpy as np
import torch
from torch import nn

from tools.core import ToolError, deploy_prototxt
from tools.core import protos as cm
from tools.porting.backends import onnx_outputs, pytorch_outputs, random_inputs, relative_error
from tools.porting.torch_net import CaffeNet

ONNX_OPSET = 18


def resolve_prototxt(prototxt, net, dataset):
    if prototxt is not None:
        return prototxt
    if net is None or dataset is None:
        raise ToolError('give a prototxt, or both net and dataset')
    return deploy_prototxt(net, dataset)


def read_weights(path, module):
    """{caffe layer: [arrays]} from a .caffemodel, an .npz of ours or a torch state_dict file."""
    if str(path).endswith('.caffemodel'):
        return cm.layer_blobs(cm.read_caffemodel(path))
    try:
        if str(path).endswith('.npz'):
            with np.load(path) as arrays:
                state = {key: arrays[key] for key in arrays.files}
        else:
            state = torch.load(path, map_location='cpu', weights_only=True)
    except OSError as err:
        raise ToolError(f'{path}: cannot read: {err.strerror or err}') from None
    except Exception as err:  # a damaged zip / pickle: torch and numpy raise many types
        raise ToolError(f'{path}: not a weights file ({type(err).__name__}: {err})') from None
    try:
        return module.state_dict_to_caffe_blobs(state)
    except (KeyError, ValueError) as err:
        raise ToolError(f'{path}: does not fit the net ({err})') from None


def load_pytorch(weights=None, prototxt=None, *, net=None, dataset=None):
    """The deploy net as a torch module in eval mode, weights from a caffemodel, .pt or .npz file."""
    module = CaffeNet(cm.read_net(resolve_prototxt(prototxt, net, dataset))).eval()
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
    import onnx  # noqa: PLC0415

    example = tuple(torch.zeros(module.input_shapes[name]) for name in module.input_names)
    with warnings.catch_warnings():  # torch's exporter trips over its own pytree deprecation
        warnings.filterwarnings('ignore', message='.*LeafSpec.*', category=FutureWarning)
        torch.onnx.export(
            _TupleOutputs(module).eval(),
            example,
            out,
            input_names=module.input_names,
            output_names=module.output_names,
            opset_version=opset,
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    onnx.checker.check_model(out)
    return out


def check_onnx(module, onnx_path, seed=0):
    """{output: relative error of ONNX Runtime vs the torch module} on a seeded random input."""
    inputs = random_inputs({n: module.input_shapes[n] for n in module.input_names}, seed)
    reference = pytorch_outputs(module, inputs)
    got = onnx_outputs(onnx_path, inputs)
    return {name: relative_error(got[name], reference[name]) for name in module.output_names}


def export_caffemodel(module, prototxt, out, template=None):
    """Write the module's weights as a caffemodel: into a copy of `template` or via pycaffe."""
    blobs = module.state_dict_to_caffe_blobs(module.state_dict())
    if template is not None:
        try:
            net = cm.replace_blobs(cm.read_caffemodel(template), blobs)
        except (KeyError, ValueError) as err:
            raise ToolError(f'{template}: {err}') from None
        with open(out, 'wb') as f:
            f.write(net.SerializeToString())
        return out
    import caffe  # noqa: PLC0415

    net = caffe.Net(str(prototxt), caffe.TEST)
    cm.copy_blobs(net, blobs, out)
    net.save(str(out))
    return out
