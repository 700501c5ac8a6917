"""Port a HybridNet caffemodel to PyTorch, ONNX or NumPy, and PyTorch/NumPy weights back to Caffe.

`python -m tools.export` is the command line. Stand-alone artifacts, batch size free (axis 0
symbolic), outputs named as the Caffe blobs:
pytorch: torch.export's ExportedProgram (`torch.export.save`, .pt2), loaded with PyTorch alone:
`torch.export.load(f).module()(data)` -> {blob: tensor};
onnx: the same graph at opset ONNX_OPSET (input axis 0 `batch`), checked by `onnx.checker`
(full check) and against the module with ONNX Runtime.
The weights alone, for this project's `CaffeNet` (`load_pytorch(file, net=, dataset=)`):
state_dict: `torch.save` of the module's state_dict, keys `<caffe layer>.weight` / `.bias` in
Caffe's blob shapes; npz: the same arrays under the same keys.
caffemodel: weights (.pt state_dict, .pt2 program or .npz) written back, by pycaffe from the
deploy net, or into a copy of --template (e.g. the training caffemodel) with only the blob
values replaced. OpenCV's dnn reads deploy prototxt + caffemodel directly (docs/PORTING.md);
`python -m tools.parity` measures every backend.
"""

import os
import warnings

import numpy as np
import torch
from torch import nn

from tools.core import ToolError, deploy_prototxt
from tools.core import protos as cm
from tools.porting.backends import onnx_outputs, program_outputs, pytorch_outputs, random_inputs, relative_error
from tools.porting.torch_net import CaffeNet

ONNX_OPSET = 18
BATCH_EXAMPLE = 2
MAX_BATCH = 1024


def resolve_prototxt(prototxt, net, dataset):
    if prototxt is not None:
        return prototxt
    if net is None or dataset is None:
        raise ToolError('give a prototxt, or both net and dataset')
    return deploy_prototxt(net, dataset)


def read_weights(path, module):
    """{caffe layer: [arrays]} from a .caffemodel, an .npz or .pt2 of ours or a torch state_dict file."""
    if str(path).endswith('.caffemodel'):
        return cm.layer_blobs(cm.read_caffemodel(path))
    try:
        if str(path).endswith('.npz'):
            with np.load(path) as arrays:
                state = {key: arrays[key] for key in arrays.files}
        elif str(path).endswith('.pt2'):
            state = torch.export.load(path).state_dict
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
        blobs = read_weights(weights, module)
        try:
            module.load_caffe_blobs(blobs)
        except (KeyError, ValueError) as err:  # another net's weights, or a file cut at a layer boundary
            raise ToolError(f'{weights}: does not fit the net ({err.args[0] if err.args else err})') from None
    return module


def export_state_dict(module, out):
    """The weights alone (`torch.save` of the state_dict): loading them needs `CaffeNet` and the prototxt."""
    torch.save(module.state_dict(), out)


def export_npz(module, out):
    np.savez(out, **{key: value.numpy() for key, value in module.state_dict().items()})


def example_inputs(module, batch=BATCH_EXAMPLE):
    """Zero inputs of the deploy shapes with `batch` samples (2: torch.export specialises a batch of 1)."""
    return tuple(torch.zeros((batch,) + tuple(module.input_shapes[n][1:])) for n in module.input_names)


def batch_dynamic_shapes(module):
    """dynamic_shapes of the `*inputs` argument: axis 0 of every input is one symbolic `batch`."""
    batch = torch.export.Dim('batch', min=1, max=MAX_BATCH)
    return tuple({0: batch} for _ in module.input_names)


def export_program(module):
    """torch.export's ExportedProgram of the module, batch dynamic: outputs {Caffe blob: tensor}."""
    with torch.no_grad():
        return torch.export.export(
            module.eval(), example_inputs(module), dynamic_shapes=(batch_dynamic_shapes(module),)
        )


def export_pytorch(module, out):
    """A stand-alone PyTorch file (`torch.export.save`, .pt2): `torch.export.load(out).module()(data)`
    gives {blob: tensor} for any batch size, with PyTorch alone (no Caffe, no project code)."""
    torch.export.save(export_program(module), out)
    return out


class _TupleOutputs(nn.Module):
    """The net with its outputs as a tuple in `output_names` order (what ONNX export wants)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, *inputs):
        out = self.net(*inputs)
        return tuple(out[name] for name in self.net.output_names)


def export_onnx(module, out, opset=ONNX_OPSET, dynamic_batch=True):
    """ONNX model of the module, batch dynamic (axis 0 named `batch`), one self-contained file,
    checked with `onnx.checker` (full check: shape inference included). dynamic_batch=False
    keeps the deploy net's input shapes (for nets that only run at their own batch size, e.g.
    a Reshape that drops axis 0)."""
    import onnx  # noqa: PLC0415

    if dynamic_batch:
        example, dynamic_shapes = example_inputs(module), (batch_dynamic_shapes(module),)
    else:
        example, dynamic_shapes = tuple(torch.zeros(module.input_shapes[n]) for n in module.input_names), None

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
            dynamic_shapes=dynamic_shapes,
            external_data=False,
            verbose=False,
        )
    onnx.checker.check_model(out, full_check=True)
    return out


def check_artifact(module, path, batches=(1, 3), seed=0):
    """{(batch, output): relative error of the .onnx / .pt2 file vs the torch module}, seeded inputs."""
    run = onnx_outputs if str(path).endswith('.onnx') else program_outputs
    errors = {}
    for batch in batches:
        shapes = {n: (batch,) + tuple(module.input_shapes[n][1:]) for n in module.input_names}
        inputs = random_inputs(shapes, seed)
        reference, got = pytorch_outputs(module, inputs), run(path, inputs)
        errors.update({(batch, name): relative_error(got[name], reference[name]) for name in module.output_names})
    return errors


def export_live_net(deploy, net, backend, directory):
    """The weights of a live caffe.Net (deploy net `deploy`) as the stand-alone file `backend`
    runs, written in `directory`: .onnx for 'onnxruntime', .pt2 for 'pytorch'. The evaluation's
    exporter (`tools.evaluation.backends`): its other engines see the very weights Caffe runs."""
    module = CaffeNet(cm.read_net(deploy)).eval()
    module.load_caffe_blobs({name: [blob.data for blob in blobs] for name, blobs in net.params.items()})
    if backend == 'onnxruntime':
        return export_onnx(module, os.path.join(directory, 'net.onnx'))
    if backend == 'pytorch':
        return export_pytorch(module, os.path.join(directory, 'net.pt2'))
    raise ToolError(f'no stand-alone file for backend {backend!r} (onnxruntime, pytorch)')


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
