"""Stand-alone exports: the .pt2 (torch.export) and .onnx files run with PyTorch or ONNX Runtime
alone, at any batch size, and the user snippets of docs/PORTING.md run as written.

Each artifact is loaded in a fresh interpreter where neither this project nor Caffe is
importable (`tests.support.isolated`) and its outputs are compared with pycaffe at batch 1
and 3. The net here is small but has what pins a batch size: a global-net Reshape `0 x ...`
after an InnerProduct (as A2's and DepthNet's global depth net). The four deploy nets are
checked the same way in test_export_nets.py.
"""

import re
import shutil

import caffe
import numpy as np
import onnx
import pytest
from caffe import layers as L
from caffe import params as P

from tests.support import ROOT
from tests.support.colour_net import write_colour_net
from tests.support.isolated import run_artifacts, run_isolated
from tools.porting import export, parity

caffe.set_mode_cpu()
BATCHES = (1, 3)


def _global_net():
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 3, 16, 16]))
    n.conv = L.Convolution(n.data, num_output=4, kernel_size=3, stride=2, pad=1)
    n.pool = L.Pooling(n.conv, pool=P.Pooling.MAX, kernel_size=3, stride=2)
    n.fc = L.InnerProduct(n.pool, num_output=25)
    n.depth_global = L.Reshape(n.fc, shape=dict(dim=[0, 1, 5, 5]))
    n.flat = L.Reshape(n.pool, shape=dict(dim=[-1, 16]), axis=1, num_axes=-1)
    n.seg_prob = L.Softmax(n.flat, axis=1)
    return n.to_proto()


@pytest.fixture(scope='module')
def global_net(tmp_path_factory):
    directory = tmp_path_factory.mktemp('standalone')
    prototxt = directory / 'deploy.prototxt'
    prototxt.write_text(str(_global_net()))
    net = parity.random_net(str(prototxt), seed=5)
    net.save(str(directory / 'net.caffemodel'))
    module = export.load_pytorch(str(directory / 'net.caffemodel'), str(prototxt))
    export.export_pytorch(module, str(directory / 'net.pt2'))
    export.export_onnx(module, str(directory / 'net.onnx'))
    return dict(dir=directory, net=net, module=module)


def caffe_at_batches(net, shape, names, seed=0):
    """{batch: (inputs, pycaffe outputs)} for BATCHES, seeded inputs of `shape` with batch changed."""
    out = {}
    for batch in BATCHES:
        inputs = parity.random_inputs({'data': (batch,) + tuple(shape[1:])}, seed + batch)
        out[batch] = (inputs, parity.caffe_forward(net, inputs, names))
    return out


def assert_artifacts_match_caffe(directory, net, module):
    """net.pt2 and net.onnx in `directory`, run isolated at BATCHES, against pycaffe."""
    expected = caffe_at_batches(net, module.input_shapes['data'], module.output_names)
    got = run_artifacts(directory, {f'b{batch}': inputs['data'] for batch, (inputs, _) in expected.items()})
    for engine in ('pytorch', 'onnx'):
        for batch, (_, reference) in expected.items():
            for blob, ref in reference.items():
                err = parity.relative_error(got[(engine, f'b{batch}', blob)], ref)
                print(f'{engine} batch {batch} {blob}: {err:.1e}')
                assert err <= parity.TOLERANCE, (engine, batch, blob, err)


def test_artifacts_run_alone_at_batch_1_and_3(global_net):
    assert_artifacts_match_caffe(global_net['dir'], global_net['net'], global_net['module'])


def test_onnx_batch_is_symbolic_and_outputs_are_caffe_blobs(global_net):
    model = onnx.load(str(global_net['dir'] / 'net.onnx'))
    onnx.checker.check_model(model, full_check=True)
    (data,) = model.graph.input
    assert data.name == 'data'
    assert data.type.tensor_type.shape.dim[0].dim_param == 'batch'
    assert [o.name for o in model.graph.output] == ['depth_global', 'seg_prob']
    for output in model.graph.output:
        assert output.type.tensor_type.shape.dim[0].dim_param == 'batch'
    # the Reshape reads the batch from its input: no constant shape starting with 1 is left
    constants = [np.asarray(onnx.numpy_helper.to_array(t)).tolist() for t in model.graph.initializer if t.dims == [4]]
    assert [1, 1, 5, 5] not in constants


def test_pt2_keeps_weights_for_the_way_back(global_net):
    """A .pt2 is also a weights file: read back into CaffeNet it equals the caffemodel."""
    module = export.load_pytorch(str(global_net['dir'] / 'net.pt2'), str(global_net['dir'] / 'deploy.prototxt'))
    for key, value in global_net['module'].state_dict().items():
        assert np.array_equal(module.state_dict()[key].numpy(), value.numpy()), key


# --- docs/PORTING.md's snippets ----------------------------------------------------------

SNIPPET = re.compile(r'<!-- snippet: (\w+) -->\s*```python\n(.*?)```', re.S)


def porting_snippets():
    with open(f'{ROOT}/docs/PORTING.md', encoding='utf-8') as f:
        return dict(SNIPPET.findall(f.read()))


def test_porting_md_has_the_three_snippets():
    assert sorted(porting_snippets()) == ['onnxruntime', 'opencv', 'pytorch']


@pytest.fixture(scope='module')
def colour_artifacts(tmp_path_factory):
    """The colour-coded deploy net as the snippets name the files: a2.pt2, a2.onnx, deploy.prototxt, a2.caffemodel."""
    directory = tmp_path_factory.mktemp('snippets')
    prototxt, weights = write_colour_net(directory)
    shutil.copy(weights, directory / 'a2.caffemodel')
    module = export.load_pytorch(str(weights), str(prototxt))
    export.export_pytorch(module, str(directory / 'a2.pt2'))
    export.export_onnx(module, str(directory / 'a2.onnx'))
    return dict(dir=directory, net=caffe.Net(str(prototxt), str(weights), caffe.TEST), module=module)


@pytest.mark.parametrize('engine', ['pytorch', 'onnxruntime', 'opencv'])
def test_porting_md_snippet_runs_alone(colour_artifacts, engine):
    """Each snippet, as written, in an interpreter without Caffe or the project: `out` equals pycaffe's."""
    code = porting_snippets()[engine]
    code += "\nnp.savez('snippet_out.npz', **{name: np.asarray(value) for name, value in out.items()})\n"
    run_isolated(code, colour_artifacts['dir'])
    with np.load(colour_artifacts['dir'] / 'snippet_out.npz') as got:
        outputs = {name: got[name] for name in got.files}
    assert sorted(outputs) == ['depth', 'seg_prob']
    batch = outputs['seg_prob'].shape[0]
    inputs = {'data': snippet_input(batch)}
    reference = parity.caffe_forward(colour_artifacts['net'], inputs, list(outputs))
    for name, value in outputs.items():
        assert parity.relative_error(value, reference[name]) <= parity.TOLERANCE, (engine, name)


def snippet_input(batch):
    """The input the snippets build: seeded, image-scale (BGR minus the mean)."""
    return np.random.default_rng(0).standard_normal((batch, 3, 321, 321), dtype=np.float32) * 50
