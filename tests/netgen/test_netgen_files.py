"""netgen's files and contracts, read from the protos (no caffe.Net is built here):
paths, names, byte-stable generation, the data layer's param_str, loss tops, fixed layers,
deploy blobs and solvers."""

import json
import os
import shutil
import subprocess
import sys

import pytest

import netgen
from netgen import config, generate, shapes
from netgen.nets import SPECS, build, recipe
from tests.support import ROOT

TRAINABLE = list(SPECS)  # a1, a2, deeplab_aspp and the three DepthNet stages
LOSS_TYPES = ('SoftmaxWithLoss', 'EuclideanLoss')
PARAM_STR_KEYS = {
    'source',
    'batch_size',
    'crop_size',
    'train',
    'mirror',
    'flip',
    'mean',
    'label_size',
    'depth_sizes',
    'seed',
}  # docs/DESIGN.md

EXPECTED_LOSSES = {
    'a1': {'loss_seg': 1000, 'loss_depth_abs': 0.01, 'loss_depth_mvn': 1},
    'a2': {'loss_seg': 1000, 'loss_depth_abs': 0.01, 'loss_depth_mvn': 1},
    'deeplab_aspp': {'loss_seg': 1000},  # the hybrid configuration (paper L362-365)
    'depthnet_global': {'loss_global_abs': 0.01, 'loss_global_mvn': 1},
    'depthnet_gradient': {'loss_gradient_mvn': 1},
    'depthnet_refine': {'loss_depth_abs': 0.01, 'loss_depth_mvn': 1},
}
EXPECTED_OUTPUTS = {  # deploy net -> {blob: shape without N, K for the class axis}
    'a1': {'seg_prob': ('K', 41, 41), 'depth': (1, 81, 81)},
    'a2': {'seg_prob': ('K', 41, 41), 'depth': (1, 81, 81), 'depth_global': (1, 41, 41)},
    'deeplab_aspp': {'seg_prob': ('K', 41, 41)},
    'depthnet': {'depth': (1, 81, 81), 'depth_global': (1, 41, 41)},
    'depthnet_global': {'depth_global': (1, 41, 41)},
    'depthnet_gradient': {'gradient': (2, 41, 41)},
}


def consumed(proto):
    return {b for layer in proto.layer for b in layer.bottom}


# --- names and paths --------------------------------------------------------------------


def test_names():
    assert netgen.NETS == ('a1', 'a2', 'deeplab_aspp', 'depthnet')
    assert netgen.STAGES['depthnet'] == ('depthnet_global', 'depthnet_gradient', 'depthnet_refine')
    assert netgen.DATASETS == ('cityscapes', 'sunrgbd', 'nyuv2')
    assert set(TRAINABLE) == set(netgen.NAMES) - {'depthnet'}


def test_name_registry():
    """netgen.names is the one place that knows the nets, the stages and the alias."""
    from netgen import names

    assert tuple(SPECS) == names.TRAINABLE == tuple(generate.expand(netgen.NETS))
    assert (generate.NETS, generate.STAGES, generate.expand) == (names.NETS, names.STAGES, names.expand)
    assert names.stages('depthnet') == netgen.STAGES['depthnet']
    assert names.stages('a2') == ('a2',)
    assert [names.deploy_spec_name(n) for n in ('depthnet', 'a2', 'depthnet_global')] == [
        'depthnet_refine',
        'a2',
        'depthnet_global',
    ]
    assert [names.deploy_name(n) for n in ('depthnet_refine', 'a2')] == ['depthnet', 'a2']
    assert names.DEPLOY_NETS == tuple(EXPECTED_OUTPUTS)


def test_specs_are_frozen_keyword_dataclasses():
    import dataclasses

    from netgen.nets import Loss, Recipe, Solver, Spec

    for cls in (Loss, Recipe, Solver, Spec):
        assert dataclasses.is_dataclass(cls)
    with pytest.raises(dataclasses.FrozenInstanceError):
        SPECS['a1'].seg = False
    with pytest.raises(TypeError):
        Loss('seg', 'seg', 'fc8', 'label')  # keywords only
    assert SPECS['a2'].depth_gt == (('depth_gt_81', 81),)
    assert SPECS['deeplab_aspp'].depth_gt == ()
    assert [l.gt for l in SPECS['depthnet_gradient'].losses] == ['depth_gt_41']


def test_paths():
    p = netgen.paths('a1', 'cityscapes')
    assert p == dict(
        train='prototxt/a1_cityscapes/train.prototxt',
        test='prototxt/a1_cityscapes/test.prototxt',
        deploy='prototxt/a1_cityscapes/deploy.prototxt',
        solver='solvers/a1_cityscapes.prototxt',
    )
    d = netgen.paths('depthnet', 'nyuv2')
    assert d['deploy'] == 'prototxt/depthnet_nyuv2/deploy.prototxt'
    assert list(d['stages']) == list(netgen.STAGES['depthnet'])
    assert d['stages']['depthnet_global']['solver'] == 'solvers/depthnet_global_nyuv2.prototxt'
    assert d['stages']['depthnet_refine']['deploy'] == d['deploy']
    assert d['stages']['depthnet_refine'] == netgen.paths('depthnet_refine', 'nyuv2')
    assert netgen.paths('a2', 'sunrgbd', root='/r')['train'] == '/r/prototxt/a2_sunrgbd/train.prototxt'


def test_every_path_exists_in_the_repo():
    for net in TRAINABLE:
        for ds in netgen.DATASETS:
            for path in netgen.paths(net, ds, root=ROOT).values():
                assert os.path.isfile(path), path


@pytest.mark.parametrize(
    'call',
    [
        lambda: netgen.paths('a3', 'cityscapes'),
        lambda: netgen.paths('a1', 'kitti'),
        lambda: netgen.build('resnet', 'nyuv2', 'deploy'),
    ],
)
def test_unknown_names_list_the_valid_ones(call):
    with pytest.raises(ValueError) as e:
        call()
    msg = str(e.value)
    assert all(n in msg for n in netgen.NAMES) or all(d in msg for d in netgen.DATASETS)


def test_cli_rejects_unknown_names():
    for args, valid in ((['--net', 'a3'], netgen.NAMES), (['--dataset', 'kitti'], netgen.DATASETS)):
        r = subprocess.run([sys.executable, '-m', 'netgen', '--check'] + args, cwd=ROOT, capture_output=True, text=True)
        assert r.returncode == 2, r.stderr
        assert r.stderr.startswith('error: ') and r.stderr.count('\n') == 1, r.stderr
        assert all(v in r.stderr for v in valid), r.stderr


def test_cli_help():
    r = subprocess.run([sys.executable, '-m', 'netgen', '--help'], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    for word in ('--check', '--net', '--dataset', '--baseline-recipe', '--set', '--print'):
        assert word in r.stdout
    assert all(n in r.stdout for n in netgen.NAMES + netgen.DATASETS)


def test_cli_print():
    r = subprocess.run(
        [sys.executable, '-m', 'netgen', '--print', 'depthnet', 'nyuv2', 'deploy'],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert 'name: "depthnet_nyuv2_deploy"' in r.stdout


# --- generated files ----------------------------------------------------------------------


def test_checked_in_files_are_up_to_date():
    assert netgen.check(ROOT) == []


def test_generation_is_byte_stable_and_check_finds_drift(tmp_path):
    generate.write_all(str(tmp_path), diagrams=False)
    first = {
        os.path.relpath(os.path.join(d, f), tmp_path): open(os.path.join(d, f), 'rb').read()
        for d, _, fs in os.walk(tmp_path)
        for f in fs
    }
    assert generate.check(str(tmp_path), diagrams=False) == []
    generate.write_all(str(tmp_path), diagrams=False)
    second = {
        os.path.relpath(os.path.join(d, f), tmp_path): open(os.path.join(d, f), 'rb').read()
        for d, _, fs in os.walk(tmp_path)
        for f in fs
    }
    assert first == second
    # the repo's checked-in files are the same bytes
    for rel, data in first.items():
        with open(os.path.join(ROOT, rel), 'rb') as f:
            assert f.read() == data, rel

    stale = tmp_path / 'prototxt' / 'a1_cityscapes' / 'train.prototxt'
    stale.write_text(stale.read_text().replace('num_output: 64', 'num_output: 65', 1))
    (tmp_path / 'solvers' / 'old_net.prototxt').write_text('')
    shutil.rmtree(tmp_path / 'prototxt' / 'depthnet_nyuv2')
    problems = generate.check(str(tmp_path))
    assert 'stale: prototxt/a1_cityscapes/train.prototxt' in problems
    assert 'unexpected (not generated): solvers/old_net.prototxt' in problems
    assert 'missing: prototxt/depthnet_nyuv2/deploy.prototxt' in problems
    assert 'missing diagram: docs/nets/a1.png' in problems


def test_every_generated_file_parses_back():
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format

    for rel, text in generate.all_texts().items():
        if rel.endswith('.prototxt'):
            msg = caffe_pb2.SolverParameter() if rel.startswith('solvers') else caffe_pb2.NetParameter()
            text_format.Merge(text, msg)
            assert generate.net_text(msg) == text, rel


# --- data layer, losses, fixed layers -------------------------------------------------------


@pytest.mark.parametrize('net', TRAINABLE)
def test_data_layer_contract(net):
    spec = SPECS[net]
    for ds in netgen.DATASETS:
        for phase in ('train', 'test'):
            proto = build(net, ds, phase)
            data = proto.layer[0]
            assert data.type == 'Python'
            assert (data.python_param.module, data.python_param.layer) == ('data_prep.layers', 'HybridData')
            p = json.loads(data.python_param.param_str)
            depth = bool(spec.depth_gt)  # the depth bound only where the net reads depth
            assert set(p) == PARAM_STR_KEYS | ({'max_depth'} if depth else set())
            assert p.get('max_depth') == (config.MAX_DEPTH[ds] if depth else None)
            split = 'train' if phase == 'train' else config.TEST_SPLIT[ds]
            assert p['source'] == 'data/%s/%s' % (ds, split)
            assert p['crop_size'] == 321 and p['mean'] == list(config.MEAN_BGR)
            assert p['train'] is (phase == 'train') and p['mirror'] is (phase == 'train')
            assert p['flip'] is False
            assert p['batch_size'] == (7 if phase == 'train' else 1)
            assert recipe(net).batch == 7
            assert p['label_size'] == (41 if spec.seg else None)
            tops = ['data'] + (['label'] if spec.seg else []) + [t for t, _ in spec.depth_gt]
            assert list(data.top) == tops
            assert p['depth_sizes'] == [s for _, s in spec.depth_gt]
            assert [l.type for l in proto.layer].count('Python') == 1
            # the Input variant has the same tops and shapes
            blobs = shapes.infer(proto)[0]
            swapped = build(net, ds, phase, data_layer='input')
            assert list(swapped.layer[0].top) == tops
            assert shapes.infer(swapped)[0] == blobs
            assert swapped.layer[1:] == proto.layer[1:]


@pytest.mark.parametrize('net', TRAINABLE)
def test_loss_tops(net):
    for phase in ('train', 'test'):
        proto = build(net, 'cityscapes', phase)
        losses = {l.top[0]: l.loss_weight[0] for l in proto.layer if l.type in LOSS_TYPES}
        assert losses == pytest.approx(EXPECTED_LOSSES[net])
        # every top named loss_* is a loss term, and nothing else is left unconsumed
        tops = {t for l in proto.layer for t in l.top}
        assert {t for t in tops if t.startswith('loss_')} == set(losses)
        assert tops - consumed(proto) == set(losses)
        seg = [l for l in proto.layer if l.type == 'SoftmaxWithLoss']
        for l in seg:
            assert l.loss_param.ignore_label == 255
            assert list(l.bottom) == ['fc8', 'label']


@pytest.mark.parametrize('net', TRAINABLE)
def test_fixed_and_frozen_layers(net):
    for phase in ('train', 'test', 'deploy'):
        proto = build(net, 'nyuv2', phase)
        for l in proto.layer:
            mults = [p.lr_mult for p in l.param]
            if l.name.startswith('fixed_'):
                assert l.name.startswith(('fixed_up2_', 'fixed_prewitt_')), l.name
                assert mults == [0] and l.param[0].decay_mult == 0, l.name
                assert l.convolution_param.bias_term is False
                assert tuple(l.convolution_param.kernel_size) == (3,)
                if l.type == 'Deconvolution':
                    cp = l.convolution_param
                    assert (cp.stride[0], cp.pad[0]) == (2, 1)
                    assert cp.group == cp.num_output
            elif l.type == 'Deconvolution':
                pytest.fail('Deconvolution %s must be a fixed_up2_ layer' % l.name)
            elif 0 in mults:
                # only DepthNet's refine stage freezes the global and gradient nets
                assert net == 'depthnet_refine' and l.name.startswith(('global_', 'grad_', 'gradient')), l.name
                assert mults == [0, 0]
        if net == 'depthnet_refine':
            frozen = [l.name for l in proto.layer if [p.lr_mult for p in l.param] == [0, 0]]
            assert 'global_fc7' in frozen and 'grad_conv1' in frozen and 'gradient' in frozen


def test_layer_names_shared_between_nets():
    """Weights move between nets by layer name: DeepLab's names in A1/A2, the DepthNet
    stage names in A2 (global net) and in the refine stage."""

    def learnable(net):
        params = shapes.infer(build(net, 'cityscapes', 'train'))[1]
        return {name: blobs for name, (blobs, _) in params.items() if not name.startswith('fixed_')}

    deeplab, a1, a2 = learnable('deeplab_aspp'), learnable('a1'), learnable('a2')
    glob, grad = learnable('depthnet_global'), learnable('depthnet_gradient')
    refine = learnable('depthnet_refine')
    for name in deeplab:
        assert a1[name] == deeplab[name] and a2[name] == deeplab[name], name
    assert {'conv1_1', 'conv5_3', 'fc6_1', 'fc7_4', 'fc8_4'} <= set(deeplab)
    for name in glob:
        assert a2[name] == glob[name] and refine[name] == glob[name], name
    for name in grad:
        assert refine[name] == grad[name], name
    for name in ('refine_conv1', 'refine_conv3', 'refine_conv4', 'refine_conv5'):
        assert a1[name] == a2[name] == refine[name], name
    # refine_conv2 sees conv1's 96 maps + the context: VGG (A1), global + VGG (A2),
    # global + gradient (DepthNet)
    assert [n['refine_conv2'][0][1] for n in (a1, a2, refine)] == [96 + 512, 96 + 513, 96 + 3]


# --- deploy nets ------------------------------------------------------------------------------


@pytest.mark.parametrize('net', list(EXPECTED_OUTPUTS))
def test_deploy_io(net):
    for ds in netgen.DATASETS:
        proto = build(net, ds, 'deploy')
        assert proto.layer[0].type == 'Input' and list(proto.layer[0].top) == ['data']
        assert list(proto.layer[0].input_param.shape[0].dim) == [1, 3, 321, 321]
        assert not any(l.type in LOSS_TYPES + ('Python', 'Dropout') for l in proto.layer)
        blobs = shapes.infer(proto)[0]
        outputs = {t for l in proto.layer for t in l.top} - consumed(proto)
        assert outputs == set(EXPECTED_OUTPUTS[net])
        for blob, shape in EXPECTED_OUTPUTS[net].items():
            k = config.NUM_CLASSES[ds]
            assert blobs[blob] == [1] + [k if s == 'K' else s for s in shape], (net, ds, blob)
    assert build(net, 'cityscapes', 'deploy', batch_size=4).layer[0].input_param.shape[0].dim[0] == 4


def test_joint_depthnet_deploy_is_the_refine_stage():
    for ds in netgen.DATASETS:
        a, b = build('depthnet', ds, 'deploy'), build('depthnet_refine', ds, 'deploy')
        assert a == b and a.name == 'depthnet_%s_deploy' % ds


def test_geometry_of_the_paper():
    blobs = shapes.infer(build('a2', 'cityscapes', 'deploy'))[0]
    assert blobs['pool1'][2:] == [161, 161] and blobs['pool2'][2:] == [81, 81]
    assert blobs['pool3'][2:] == blobs['pool5'][2:] == [41, 41]
    assert blobs['global_pool5'] == [1, 256, 19, 19]  # 92,416 inputs to global_fc6
    assert blobs['global_fc7'] == [1, 1681]  # paper L253-257
    assert blobs['refine_pool1'] == [1, 96, 81, 81] and blobs['depth'] == [1, 1, 81, 81]
    grad = shapes.infer(build('depthnet_gradient', 'cityscapes', 'deploy'))[0]
    assert grad['grad_pool1'][2:] == grad['grad_pool5'][2:] == [41, 41]
    a2 = build('a2', 'cityscapes', 'train')
    rates = [l.convolution_param.dilation[0] for l in a2.layer if l.name.startswith('fc6_')]
    assert rates == [6, 12, 18, 24]
    lrn = [l.bottom[0] for l in a2.layer if l.type == 'LRN']
    assert lrn == ['global_conv1', 'global_conv2', 'refine_conv1']  # DepthNet's (FIDELITY.md, "LRN")
    relu = {l.bottom[0] for l in a2.layer if l.type == 'ReLU'}
    assert {'refine_conv2', 'refine_conv3', 'refine_conv4'} <= relu
    assert 'refine_conv5' not in relu  # DepthNet's linear output (FIDELITY.md)


# --- solvers ----------------------------------------------------------------------------------


def test_solvers():
    for ds in netgen.DATASETS:
        for net in TRAINABLE:
            s = netgen.solver(net, ds)
            p = netgen.paths(net, ds)
            assert s.train_net == p['train'] and list(s.test_net) == [p['test']]
            assert s.snapshot_prefix.startswith('runs/%s_%s/' % (net, ds))
            assert s.momentum == pytest.approx(0.9)
            assert not s.HasField('solver_mode')  # the driver / CLI flag decides
        for net in ('a1', 'a2'):  # paper L305-309
            s = netgen.solver(net, ds)
            assert (s.base_lr, s.lr_policy, s.max_iter) == (pytest.approx(2.5e-6), 'poly', 100000)
            assert s.weight_decay == pytest.approx(0.005)
        fields = ('base_lr', 'lr_policy', 'power', 'max_iter', 'momentum', 'weight_decay')
        hybrid = [getattr(netgen.solver('a1', ds), f) for f in fields]
        for net in ('deeplab_aspp',) + netgen.STAGES['depthnet']:  # paper L362-365
            assert [getattr(netgen.solver(net, ds), f) for f in fields] == hybrid, net
        # the parents' own recipes, one flag away
        s = netgen.solver('deeplab_aspp', ds, baseline_recipe='parent')
        assert (s.base_lr, s.lr_policy, s.power, s.max_iter, s.weight_decay) == (
            pytest.approx(1e-3),
            'poly',
            pytest.approx(0.9),
            20000,
            pytest.approx(5e-4),
        )
        for stage, lr in zip(netgen.STAGES['depthnet'], (5e-4, 2.5e-4, 2.5e-5)):
            s = netgen.solver(stage, ds, baseline_recipe='parent')
            assert (s.base_lr, s.lr_policy, s.max_iter) == (pytest.approx(lr), 'fixed', 100000)
            assert s.weight_decay == pytest.approx(0.005)
        assert netgen.solver('a1', ds, baseline_recipe='parent') == netgen.solver('a1', ds)
    with pytest.raises(ValueError):
        netgen.solver('depthnet', 'cityscapes')
    with pytest.raises(ValueError, match='hybrid, parent'):
        netgen.solver('a1', 'cityscapes', baseline_recipe='deeplab')


def test_parent_recipe_nets():
    """--baseline-recipe parent: the parents' batch sizes and DeepLab's loss weight 1."""

    def batch(proto):
        return json.loads(proto.layer[0].python_param.param_str)['batch_size']

    for net, b in (
        ('deeplab_aspp', 10),
        ('depthnet_global', 32),
        ('depthnet_gradient', 32),
        ('depthnet_refine', 16),
        ('a1', 7),
        ('a2', 7),
    ):
        assert batch(build(net, 'nyuv2', 'train', baseline_recipe='parent')) == b, net
    proto = build('deeplab_aspp', 'nyuv2', 'train', baseline_recipe='parent')
    assert [l.loss_weight[0] for l in proto.layer if l.type in LOSS_TYPES] == [1]


def test_cli_variants(tmp_path, monkeypatch, capsys):
    """--baseline-recipe and --set write variants (and --check compares against them)."""
    from netgen.__main__ import main

    for name in ('BASELINE_RECIPE', 'FLIP', 'REFINE_VGG_BLOB'):  # main() sets them
        monkeypatch.setattr(config, name, getattr(config, name))

    def run(*args):
        return main(['--root', str(tmp_path), '--no-draw', '--net', 'deeplab_aspp', '--dataset', 'nyuv2'] + list(args))

    assert run('--baseline-recipe', 'parent', '--set', 'FLIP=True') == 0
    solver = (tmp_path / 'solvers' / 'deeplab_aspp_nyuv2.prototxt').read_text()
    assert 'base_lr: 0.001' in solver
    train = (tmp_path / 'prototxt' / 'deeplab_aspp_nyuv2' / 'train.prototxt').read_text()
    assert '\\"flip\\": true' in train and '\\"batch_size\\": 10' in train
    assert run('--check', '--baseline-recipe', 'parent', '--set', 'FLIP=True') == 0
    capsys.readouterr()
    assert run('--set', 'NO_SUCH=1') == 2
    err = capsys.readouterr().err
    assert err.startswith('error: --set NO_SUCH=1') and 'RANDOM_INIT_STD' in err
    assert run('--set', 'REFINE_VGG_BLOB=conv1_1', '--net', 'a2') == 2  # a rejected value
    assert capsys.readouterr().err.startswith('error: REFINE_VGG_BLOB')


def test_diagram(tmp_path):
    png = tmp_path / 'depthnet_gradient.png'
    proto = build('depthnet_gradient', 'cityscapes', 'train')
    assert generate.draw(str(png), proto) is True
    assert png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert generate.draw(str(png), proto) is False  # unchanged: not rewritten


# --- the decision flags of docs/FIDELITY.md ("## Nets") ---------------------------------------


def test_decision_flags(monkeypatch):
    """Each constant the decision record names changes what it says it changes."""
    from caffe.proto import caffe_pb2

    def a2(**flags):
        for k, v in flags.items():
            monkeypatch.setattr(config, k, v)
        try:
            proto = build('a2', 'cityscapes', 'train')
        finally:
            monkeypatch.undo()
        return proto, {l.name: l for l in proto.layer}

    base, L = a2()
    assert not [l for l in base.layer if l.top[0].startswith('loss_global')]
    p, l = a2(A2_GLOBAL_LOSS=True)
    assert json.loads(p.layer[0].python_param.param_str)['depth_sizes'] == [81, 41]
    assert {'loss_global_abs', 'loss_global_mvn'} <= set(l)
    assert list(l['global_masked'].bottom) == ['depth_global', 'global_valid']
    assert [n for n in L if n.startswith('norm_global')] == ['norm_global_conv1', 'norm_global_conv2']
    _, l = a2(LRN_EVERY_CONV=True)
    assert [n for n in l if n.startswith('norm_global')] == ['norm_global_conv%d' % i for i in range(1, 6)]
    assert L['global_fc7'].inner_product_param.weight_filler.type == 'gaussian'
    _, l = a2(A2_GLOBAL_FC_FILLER='xavier')
    assert l['global_fc6'].inner_product_param.weight_filler.type == 'xavier'
    assert L['refine_conv4'].convolution_param.group == 2
    _, l = a2(REFINE_CONV4_GROUP=1)
    assert l['refine_conv4'].convolution_param.group == 1
    _, l = a2(REFINE_CONTEXT_MVN=True)
    assert list(l['refine_context'].bottom) == ['global_map_mvn', 'pool5'] and 'global_map_mvn' not in L
    assert json.loads(L['hybrid_data'].python_param.param_str)['max_depth'] == 80
    _, l = a2(MAX_DEPTH={'cityscapes': 50.0})
    assert json.loads(l['hybrid_data'].python_param.param_str)['max_depth'] == 50
    grad = {x.name: x for x in build('depthnet_gradient', 'cityscapes', 'train').layer}
    prewitt = list(grad['fixed_prewitt_gradient'].blobs[0].data)
    assert prewitt[:3] == [-1, 0, 1]  # channel 0: x
    monkeypatch.setattr(config, 'GRADIENT_ORDER', ('y', 'x'))
    grad = {x.name: x for x in build('depthnet_gradient', 'cityscapes', 'train').layer}
    monkeypatch.undo()
    assert list(grad['fixed_prewitt_gradient'].blobs[0].data)[:3] == [-1, -1, -1]  # channel 0: y
    _, l = a2(REFINE_FINAL_RELU=True)
    assert 'relu_refine_conv5' not in L and 'relu_refine_conv5' in l
    _, l = a2(DEPTH_LOSS_MASK=False)
    assert list(l['loss_depth_abs'].bottom) == ['depth', 'depth_gt_81']
    _, l = a2(REFINE_VGG_BLOB='conv5_3')
    assert list(l['refine_context'].bottom) == ['depth_global', 'conv5_3']
    with pytest.raises(ValueError, match='pool5'):
        a2(REFINE_VGG_BLOB='conv1_1')
    assert [p.lr_mult for p in L['refine_conv1'].param] == [1, 2]  # random: the solver's rate
    assert [p.lr_mult for p in L['refine_conv5'].param] == [1, 2]
    refine = {x.name: x for x in build('depthnet_refine', 'cityscapes', 'train').layer}
    assert [p.lr_mult for p in refine['refine_conv1'].param] == pytest.approx([0.001, 0.001])  # DepthNet's
    monkeypatch.setattr(config, 'DEPTHNET_LR_MULTS', {})
    refine = {x.name: x for x in build('depthnet_refine', 'cityscapes', 'train').layer}
    monkeypatch.undo()
    assert [p.lr_mult for p in refine['refine_conv1'].param] == [1, 2]
    _, l = a2(LR_MULT_OVERRIDES={'refine_conv3': (0.5, 0.25)})
    assert [p.lr_mult for p in l['refine_conv3'].param] == pytest.approx([0.5, 0.25])
    assert [p.lr_mult for p in l['refine_conv1'].param] == [1, 2]
    _, l = a2(SEG_LOSS_NORMALIZATION='NONE')
    assert l['loss_seg'].loss_param.normalization == caffe_pb2.LossParameter.NONE
    _, l = a2(RANDOM_INIT_STD=0.1**0.5)
    assert l['refine_conv3'].convolution_param.weight_filler.std == pytest.approx(0.316228)
    _, l = a2(FLIP=True, CROP_SIZE=353)
    p = json.loads(l['hybrid_data'].python_param.param_str)
    assert p['flip'] is True and p['crop_size'] == 353
