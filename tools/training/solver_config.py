"""The solver a training run steps: read the generated one, write the run's own copy.

A run never trains the checked-in `solvers/*.prototxt` as they are: `write_run_copy` writes
into the run directory a solver and its nets with absolute paths, the real database path in
every data layer, the run's `snapshot_prefix`, iteration count, seed and overrides, so that a
run directory records exactly what was trained and can be resumed from anywhere.

pycaffe here has no `solver.param` and no `solver.lr`: `learning_rate` recomputes Caffe's
schedule (sgd_solver.cpp, GetLearningRate) from the SolverParameter, for the logs.
"""

import json
import math
import os

from caffe.proto import caffe_pb2

from netgen.fixed_weights import PREFIX as FIXED_PREFIX
from tools.core import ToolError
from tools.core.protos import read_net, read_solver, write_proto
from tools.training import snapshots

#: Layer whose `param_str` names a database (`source`) and a `batch_size` (docs/DESIGN.md).
DATA_LAYER_MODULE = 'data_prep.layers'
#: test_interval that Caffe never reaches: the driver runs the test net itself.
NEVER = 2**31 - 1
SOLVER_FILE, TRAIN_NET_FILE, TEST_NET_FILE = 'solver.prototxt', 'train.prototxt', 'test.prototxt'


def learning_rate(solver, iteration):
    """Caffe's learning rate at `iteration` for every `lr_policy` of SGDSolver.

    poly is the paper's "polynomial learning rate decay policy" (L306-307)."""
    policy, base, it = solver.lr_policy, solver.base_lr, iteration
    if policy == 'fixed':
        return base
    if policy == 'step':
        return base * solver.gamma ** (it // solver.stepsize)
    if policy == 'exp':
        return base * solver.gamma**it
    if policy == 'inv':
        return base * (1 + solver.gamma * it) ** -solver.power
    if policy == 'multistep':
        return base * solver.gamma ** sum(1 for v in solver.stepvalue if it >= v)
    if policy == 'poly':
        return base * (1 - it / solver.max_iter) ** solver.power
    if policy == 'sigmoid':
        return base / (1 + math.exp(-solver.gamma * (it - solver.stepsize)))
    raise ToolError('unknown lr_policy %r' % policy)


def _resolve(path, base_dir):
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(base_dir, path))


def _rewrite_data_layers(net, net_path, base_dir, data_root, batch_size):
    """Absolute database paths (and the batch size) in every HybridData layer of `net`."""
    sources = []
    for layer in net.layer:
        if layer.type != 'Python' or layer.python_param.module != DATA_LAYER_MODULE:
            continue
        try:
            params = json.loads(layer.python_param.param_str)
        except ValueError as err:
            raise ToolError('%s: layer %r: param_str is not JSON (%s)' % (net_path, layer.name, err)) from None
        if 'source' in params:
            source = params['source']
            if data_root is not None:
                source = os.path.join(data_root, os.path.basename(os.path.normpath(source)))
            params['source'] = os.path.abspath(_resolve(source, base_dir))
            sources.append(params['source'])
        if batch_size is not None:
            params['batch_size'] = batch_size
        layer.python_param.param_str = json.dumps(params, sort_keys=True)
    return sources


#: `--filler` choices: keep the generated fillers, or He et al.'s (MSRA) for learned layers.
FILLERS = ('as-generated', 'msra')
#: With 'msra': std of the Gaussian of output layers (no ReLU after them: class scores,
#: depth maps), so that a net trained from scratch starts with small scores and depths.
OUTPUT_STD = 1e-3
#: With 'msra': the typical std of mean-subtracted 8-bit pixels (about 50 on the Cityscapes
#: sample). He et al.'s filler assumes unit-variance inputs; the layers reading the image get
#: their std divided by this, so that activations start near unit scale throughout the net.
PIXEL_STD = 50.0
IMAGE_TOP = 'data'
_WEIGHTED = {
    'Convolution': 'convolution_param',
    'Deconvolution': 'convolution_param',
    'InnerProduct': 'inner_product_param',
}


def _image_fan_in(layer):
    """Fan-in of a Convolution reading the 3-channel image: 3 x kernel area / group."""
    p = layer.convolution_param
    kh = p.kernel_h or (p.kernel_size[0] if p.kernel_size else 1)
    kw = p.kernel_w or (p.kernel_size[-1] if p.kernel_size else 1)
    return 3 * kh * kw // max(p.group, 1)


def replace_fillers(net, filler):
    """Re-choose the weight filler of every learned Convolution/Deconvolution/InnerProduct
    layer of `net` ('msra', He et al. 2015): MSRA where a ReLU follows, scaled by 1/PIXEL_STD
    for convolutions of the image; a Gaussian of std OUTPUT_STD where no ReLU follows (the
    output layers). Fixed layers (`fixed_*`, filled after construction) and frozen ones
    (lr_mult 0) keep theirs. Returns {layer: (filler type, std or None)}."""
    relu_inputs = {b for layer in net.layer if layer.type == 'ReLU' for b in layer.bottom}
    frozen = frozen_layers(net)
    changed = {}
    for layer in net.layer:
        if layer.type not in _WEIGHTED or layer.name.startswith(FIXED_PREFIX) or layer.name in frozen:
            continue
        weight_filler = getattr(layer, _WEIGHTED[layer.type]).weight_filler
        weight_filler.Clear()
        if not all(top in relu_inputs for top in layer.top):
            weight_filler.type, weight_filler.std = 'gaussian', OUTPUT_STD
        elif layer.type == 'Convolution' and list(layer.bottom) == [IMAGE_TOP]:
            weight_filler.type = 'gaussian'
            weight_filler.std = (2.0 / _image_fan_in(layer)) ** 0.5 / PIXEL_STD
        else:
            weight_filler.type = filler
        changed[layer.name] = (weight_filler.type, weight_filler.std if weight_filler.HasField('std') else None)
    return changed


def set_loss_weights(net, weights, net_path):
    """loss_weight of the layers whose top is a key of `weights` ({top: weight})."""
    found = set()
    for layer in net.layer:
        for index, top in enumerate(layer.top):
            if top in weights:
                while len(layer.loss_weight) < len(layer.top):
                    layer.loss_weight.append(0.0)
                layer.loss_weight[index] = weights[top]
                found.add(top)
    missing = sorted(set(weights) - found)
    if missing:
        raise ToolError(
            '%s: no top named %s (loss tops: %s)'
            % (
                net_path,
                ', '.join(missing),
                ', '.join(t for layer in net.layer for t in layer.top if t.startswith('loss_')),
            )
        )


def frozen_layers(net):
    """Names of the layers of `net` (a NetParameter) whose every parameter has lr_mult 0."""
    return {layer.name for layer in net.layer if layer.param and all(p.lr_mult == 0 for p in layer.param)}


def check_databases(sources):
    """Raise ToolError naming the first database directory without a manifest."""
    for source in sources:
        if not os.path.isfile(os.path.join(source, 'manifest.json')):
            raise ToolError(
                'database %s is missing (no manifest.json): convert the dataset first, e.g. '
                '`python -m data_prep cityscapes --root CITYSCAPES_ROOT --out %s` (or `make '
                '<net>-<dataset>` with the dataset root set)' % (source, os.path.dirname(source))
            )


def _check_solver(solver, solver_path, filler):
    if solver.HasField('net') or solver.HasField('net_param') or solver.HasField('train_net_param'):
        raise ToolError(
            '%s: give the nets as train_net / test_net files (net, net_param and '
            'train_net_param are not supported)' % solver_path
        )
    if not solver.train_net:
        raise ToolError('%s: no train_net' % solver_path)
    if filler not in FILLERS:
        raise ToolError('unknown filler %r: choose from %s' % (filler, ', '.join(FILLERS)))


def _copy_net(src, dst, base_dir, data_root, batch_size, filler='as-generated', loss_weights=None):
    """The net file `src` written to `dst` with the run's data paths and overrides; returns
    the database directories it reads."""
    net = read_net(src)
    sources = _rewrite_data_layers(net, src, base_dir, data_root, batch_size)
    if filler != 'as-generated':
        replace_fillers(net, filler)
    if loss_weights:
        set_loss_weights(net, loss_weights, src)
    write_proto(dst, net)
    return sources


def _run_settings(solver, run_dir, stage, max_iter, seed, base_lr, solver_type):
    """The fields a run's copy of the solver always sets, and the overrides."""
    solver.test_interval = NEVER  # the fork requires > 0 with a test net
    solver.test_initialization = False
    solver.display = 0
    solver.snapshot = 0
    solver.snapshot_after_train = False
    solver.snapshot_format = caffe_pb2.SolverParameter.BINARYPROTO
    solver.snapshot_prefix = snapshots.caffe_prefix(run_dir, stage)  # renamed into snapshots/ when good
    for field, value in (('max_iter', max_iter), ('random_seed', seed), ('base_lr', base_lr), ('type', solver_type)):
        if value is not None:
            setattr(solver, field, value)


def write_run_copy(
    solver_path,
    run_dir,
    stage,
    *,
    base_dir='.',
    max_iter=None,
    seed=None,
    base_lr=None,
    batch_size=None,
    data_root=None,
    keep_test_net=False,
    filler='as-generated',
    solver_type=None,
    loss_weights=None,
    check_data=True,
):
    """Write `run_dir`/{solver,train[,test]}.prototxt from the solver at `solver_path`.

    Relative paths in the solver and in the data layers are relative to `base_dir` (the repo
    root for the generated files). The copy has absolute paths, `snapshot_prefix`
    `run_dir`/snapshots/`stage`, `snapshot: 0` (the driver snapshots), Caffe's own display
    and testing off (the driver logs and tests), and the given overrides (`filler`: see
    `replace_fillers`; it changes only the train net, whose weights the test net shares;
    `solver_type`: Caffe's solver `type`, e.g. 'Adam', with the file's momentum as beta1;
    `loss_weights`: {loss top: weight} in the train net). Returns
    (path of the copy, its SolverParameter, database directories the nets read)."""
    solver = read_solver(solver_path)
    _check_solver(solver, solver_path, filler)
    run_dir = os.path.abspath(run_dir)
    os.makedirs(os.path.join(run_dir, 'snapshots'), exist_ok=True)
    train_path = os.path.join(run_dir, TRAIN_NET_FILE)
    sources = _copy_net(
        _resolve(solver.train_net, base_dir), train_path, base_dir, data_root, batch_size, filler, loss_weights
    )
    solver.train_net = train_path
    tests = list(solver.test_net)
    for field in ('test_net', 'test_iter', 'test_state'):
        solver.ClearField(field)
    if keep_test_net and tests:
        test_path = os.path.join(run_dir, TEST_NET_FILE)
        sources += _copy_net(_resolve(tests[0], base_dir), test_path, base_dir, data_root, None)
        solver.test_net.append(test_path)
        solver.test_iter.append(1)  # unused: the driver runs the test net itself
    _run_settings(solver, run_dir, stage, max_iter, seed, base_lr, solver_type)
    if check_data:
        check_databases(sources)
    path = os.path.join(run_dir, SOLVER_FILE)
    write_proto(path, solver)
    return path, solver, sources
