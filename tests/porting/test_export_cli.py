"""`python -m tools.export` end to end on a small net: every format, the reverse direction, errors."""

import os
import subprocess
import sys

import caffe
import numpy as np
import pytest
import torch
from caffe import layers as L
from caffe import params as P

from netgen.fixed_weights import write_fixed_blobs
from tests.support import ROOT
from tools import export as export_cli
from tools.core import ToolError
from tools.core import protos as cm
from tools.porting import backends, export, parity
from tools.porting.torch_net import CaffeNet, UnsupportedLayerError

caffe.set_mode_cpu()


def _small_net():
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 3, 17, 17]))
    n.conv1 = L.Convolution(n.data, num_output=8, kernel_size=5, stride=2, pad=1)
    n.relu1 = L.ReLU(n.conv1, in_place=True)
    n.norm1 = L.LRN(n.conv1, local_size=5, alpha=1e-2, beta=0.75)
    n.pool1 = L.Pooling(n.norm1, pool=P.Pooling.MAX, kernel_size=3, stride=2)
    n.score = L.Convolution(n.pool1, num_output=4, kernel_size=3, pad=2, dilation=2)
    n.fixed_up2_score = L.Deconvolution(
        n.score, convolution_param=dict(num_output=4, group=4, kernel_size=3, stride=2, pad=1, bias_term=False)
    )
    n.prob = L.Softmax(n.fixed_up2_score)
    proto = n.to_proto()
    write_fixed_blobs(proto)  # the zoom's weights live in the prototxt, as in the generated nets
    return proto


@pytest.fixture(scope='module')
def small(tmp_path_factory):
    directory = tmp_path_factory.mktemp('cli')
    prototxt = str(directory / 'deploy.prototxt')
    with open(prototxt, 'w') as f:
        f.write(str(_small_net()))
    net = parity.random_net(prototxt, seed=3)
    weights = str(directory / 'small.caffemodel')
    net.save(weights)
    x = parity.random_inputs({'data': (1, 3, 17, 17)}, seed=3)
    return dict(
        dir=directory,
        prototxt=prototxt,
        weights=weights,
        x=x,
        net=net,
        prob=parity.caffe_forward(net, x, ['prob'])['prob'],
    )


def _export(small, to, weights=None, out=None, *extra):
    out = out or str(small['dir'] / f'out{export_cli.SUFFIX[to]}')
    args = ['--prototxt', small['prototxt'], '--weights', weights or small['weights'], '--to', to, '--out', out]
    assert export_cli.main(args + list(extra)) == 0
    return out


def test_state_dict_file_has_caffe_names(small):
    state = torch.load(_export(small, 'state_dict'), weights_only=True)
    expected = {
        f'{layer}.{role}': blob.data
        for layer, blobs in small['net'].params.items()
        for role, blob in zip(('weight', 'bias'), blobs)
    }
    assert sorted(state) == sorted(expected)
    for key, value in expected.items():
        np.testing.assert_array_equal(state[key].numpy(), value)


def test_load_pytorch_runs_like_caffe(small):
    module = export.load_pytorch(_export(small, 'state_dict'), small['prototxt'])
    assert not module.training
    prob = parity.pytorch_outputs(module, small['x'])['prob']
    assert parity.relative_error(prob, small['prob']) <= parity.TOLERANCE


def test_npz_holds_every_blob_in_caffe_shape(small):
    with np.load(_export(small, 'npz')) as arrays:
        for layer, blobs in small['net'].params.items():
            for role, blob in zip(('weight', 'bias'), blobs):
                np.testing.assert_array_equal(arrays[f'{layer}.{role}'], blob.data)
        assert len(arrays.files) == sum(len(b) for b in small['net'].params.values())


@pytest.mark.parametrize('to', ['onnx', 'pytorch'])
def test_stand_alone_files_run_like_caffe_and_report_their_check(small, capsys, to):
    path = _export(small, to)
    engine = 'ONNX Runtime' if to == 'onnx' else 'torch.export program'
    printed = capsys.readouterr().out
    for batch in (1, 3):
        assert f'{engine} vs CaffeNet, batch {batch}, prob: max relative error' in printed
    run = backends.onnx_outputs if to == 'onnx' else backends.program_outputs
    prob = run(path, small['x'])['prob']
    assert parity.relative_error(prob, small['prob']) <= parity.TOLERANCE


@pytest.mark.parametrize('source', ['state_dict', 'pytorch', 'npz'])
def test_weights_changed_outside_caffe_come_back(small, source):
    """Fine-tuned weights (.pt, .pt2 or .npz) become a caffemodel that pycaffe loads, changes included."""
    module = export.load_pytorch(small['weights'], small['prototxt'])
    with torch.no_grad():
        module.score.weight.mul_(-3.0)
        module.conv1.bias.add_(0.25)
    tuned = str(small['dir'] / f'tuned{export_cli.SUFFIX[source]}')
    {'state_dict': export.export_state_dict, 'pytorch': export.export_pytorch, 'npz': export.export_npz}[source](
        module, tuned
    )
    for extra in ([], ['--template', small['weights']]):
        out = _export(small, 'caffemodel', tuned, str(small['dir'] / 'tuned.caffemodel'), *extra)
        net = caffe.Net(small['prototxt'], out, caffe.TEST)
        np.testing.assert_array_equal(net.params['score'][0].data, -3.0 * small['net'].params['score'][0].data)
        np.testing.assert_array_equal(net.params['conv1'][1].data, module.conv1.bias.detach().numpy())
        prob = parity.caffe_forward(net, small['x'], ['prob'])['prob']
        assert parity.relative_error(parity.pytorch_outputs(module, small['x'])['prob'], prob) <= parity.TOLERANCE


@pytest.mark.parametrize('via', ['state_dict', 'pytorch', 'npz'])
def test_round_trip_is_bit_identical(small, via):
    ported = _export(small, via, None, str(small['dir'] / f'round{export_cli.SUFFIX[via]}'))
    for extra in ([], ['--template', small['weights']]):
        out = _export(small, 'caffemodel', ported, str(small['dir'] / 'round.caffemodel'), *extra)
        with open(out, 'rb') as a, open(small['weights'], 'rb') as b:
            assert a.read() == b.read()


def test_template_keeps_the_rest_of_the_file(small):
    """--template changes blob values only: layers and fields that deploy lacks stay."""
    template = cm.read_caffemodel(small['weights'])
    template.layer.add(name='extra_train_only', type='ReLU').blobs.add().data.extend([1.0, 2.0])
    template.layer[-1].blobs[0].shape.dim.append(2)
    path = str(small['dir'] / 'template.caffemodel')
    with open(path, 'wb') as f:
        f.write(template.SerializeToString())
    out = _export(small, 'caffemodel', _export(small, 'state_dict'), None, '--template', path)
    with open(out, 'rb') as a, open(path, 'rb') as b:
        assert a.read() == b.read()


def test_missing_weights_name_the_layer(small):
    state = torch.load(_export(small, 'state_dict'), weights_only=True)
    del state['score.bias']
    path = str(small['dir'] / 'incomplete.pt')
    torch.save(state, path)
    with pytest.raises(ToolError, match='incomplete.pt: does not fit the net .*score.bias'):
        export.load_pytorch(path, small['prototxt'])


def test_unsupported_layer_names_layer_and_type(small, tmp_path, capsys):
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 2, 4, 4]))
    n.bn1 = L.BatchNorm(n.data)
    prototxt = str(tmp_path / 'bn.prototxt')
    with open(prototxt, 'w') as f:
        f.write(str(n.to_proto()))
    with pytest.raises(UnsupportedLayerError, match=r"layer 'bn1' \(type BatchNorm\)"):
        CaffeNet(cm.read_net(prototxt))
    caffe.Net(prototxt, caffe.TEST).save(str(tmp_path / 'bn.caffemodel'))
    code = export_cli.main(['--prototxt', prototxt, '--weights', str(tmp_path / 'bn.caffemodel'), '--to', 'npz'])
    assert code == 2
    assert "layer 'bn1' (type BatchNorm)" in capsys.readouterr().err


def test_unsupported_parameter_is_refused():
    net = caffe.proto.caffe_pb2.NetParameter()
    net.layer.add(name='data', type='Input', top=['data']).input_param.shape.add(dim=[1, 2, 4, 4])
    pool = net.layer.add(name='pool', type='Pooling', bottom=['data'], top=['pool'])
    pool.pooling_param.pool = P.Pooling.STOCHASTIC
    pool.pooling_param.kernel_size = 2
    with pytest.raises(UnsupportedLayerError, match="layer 'pool' .*STOCHASTIC"):
        CaffeNet(net)


def test_wrong_direction_is_a_usage_error(small):
    with pytest.raises(SystemExit) as exit_info:
        export_cli.main(['--prototxt', small['prototxt'], '--weights', small['weights'], '--to', 'caffemodel'])
    assert exit_info.value.code == 2


def test_net_and_dataset_name_the_generated_deploy_net():
    path = export.deploy_prototxt('a1', 'cityscapes')
    assert path == os.path.join(ROOT, 'prototxt', 'a1_cityscapes', 'deploy.prototxt')
    assert os.path.exists(path)


@pytest.mark.parametrize('module', ['tools.export', 'tools.parity'])
def test_help(module):
    result = subprocess.run(
        [sys.executable, '-m', module, '--help'], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert '--net' in result.stdout and '--weights' in result.stdout


def test_only_test_phase_layers_are_built(tmp_path):
    """include/exclude rules as Caffe applies them at TEST, and old net-level inputs."""
    text = """
    name: "phases"
    input: "data"
    input_shape { dim: 1 dim: 2 dim: 4 dim: 4 }
    layer { name: "train_only" type: "Power" bottom: "data" top: "train_out"
            power_param { scale: 3 } include { phase: TRAIN } }
    layer { name: "not_in_test" type: "Power" bottom: "data" top: "excluded"
            exclude { phase: TEST } }
    layer { name: "staged" type: "Power" bottom: "data" top: "staged" include { stage: "x" } }
    layer { name: "test_only" type: "Power" bottom: "data" top: "out"
            power_param { scale: 2 shift: 1 } include { phase: TEST } }
    """
    prototxt = tmp_path / 'phases.prototxt'
    prototxt.write_text(text)
    module = CaffeNet(cm.read_net(str(prototxt)))
    net = caffe.Net(str(prototxt), caffe.TEST)
    assert module.input_names == ['data'] and module.input_shapes['data'] == (1, 2, 4, 4)
    assert [name for _, name, *_ in module.graph] == ['test_only']
    assert module.output_names == list(net.outputs) == ['out']
    x = parity.random_inputs({'data': (1, 2, 4, 4)}, seed=1)
    expected = parity.caffe_forward(net, x, ['out'])['out']
    np.testing.assert_allclose(parity.pytorch_outputs(module, x)['out'], expected, rtol=1e-6)
