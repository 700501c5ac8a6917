"""Training of a net (or DepthNet's three stages) through pycaffe: the paper's sec. 4.3.

- Steps the generated solver (`solvers/<net>_<dataset>.prototxt`: 100K iterations, lr 2.5e-6,
  poly, momentum 0.9, weight decay 0.005 for A1/A2, paper L305-309) from a copy written into
  the run directory (`tools.training.solver_config`).
- Initialisation (paper L297-304): `init_deeplab` (VGG + ASPP), `init_depthnet` (A2's global
  depth net, the layers that fit), `weights` (any layers of the same name); the rest keeps the
  nets' random fillers, and the run says so loudly (`tools.training.surgery`).
- DepthNet trains its stages in order: global, gradient, then refine with the first two loaded.
- Snapshots every `snapshot_every` iterations and at the end; `resume='auto'` continues from
  the newest `.solverstate`, with the same losses as an uninterrupted run on the CPU (dropout is
  reseeded per iteration, the data layer is brought to the same batch); SIGINT/SIGTERM snapshot
  and exit (`tools.training.guard`); a NaN or infinite loss or weight stops the run at once and
  keeps the last good snapshot.
- Logs every loss term, the learning rate and images/s to `RUN_DIR/train_log.jsonl`
  (`tools.training.log`) and the console; draws `RUN_DIR/loss.png` (`tools.training.plot`).

`train(TrainOptions(...))` is the whole run; `python -m tools.train` is its command line.
"""

import collections
import dataclasses
import glob
import json
import os
import re
import shutil
import signal
import sys
import time

from tools.core import EXIT_NONFINITE, REPO, ToolError, quiet_glog, use_device

quiet_glog()

import caffe  # noqa: E402
from tqdm import tqdm  # noqa: E402

import netgen  # noqa: E402
from netgen.fixed_weights import check_fixed_weights  # noqa: E402
from tools.core.protos import read_net, read_solver  # noqa: E402
from tools.training import classifier_init, data_checks, guard, plot, snapshots, solver_config, surgery  # noqa: E402
from tools.training import distributed as parallel  # noqa: E402
from tools.training import run_dir as rundir  # noqa: E402
from tools.training.depth_fit import data_params, fit_last_depth_layer  # noqa: E402
from tools.training.log import LOG_FILE, TrainLog, format_losses  # noqa: E402


@dataclasses.dataclass
class TrainOptions:
    """What to train and how; the fields of `python -m tools.train` (its --help explains each).
    `net`/`dataset` pick the generated solver(s) unless `solver` names a file."""

    net: str = None
    dataset: str = None
    gpu: int = None
    iters: int = None
    init_deeplab: str = None
    init_depthnet: str = None
    weights: list = dataclasses.field(default_factory=list)
    resume: str = None
    out: str = None
    data: str = None
    solver: str = None
    batch: int = None
    base_lr: float = None
    init_classifier: int = 0
    probe_classifier: int = 0
    probe_depth: int = 0
    filler: str = 'as-generated'
    solver_type: str = None
    loss_weight: list = dataclasses.field(default_factory=list)
    seed: int = 1
    lr_scaling: str = 'none'
    collective_timeout: float = 600
    snapshot_every: int = None
    display: int = None
    test_every: int = 0
    test_iters: int = 10
    check_weights_every: int = 1
    no_plot: bool = False
    quiet: bool = False
    inject_nan_at: int = None
    inject_stop_at: int = None
    allow_changes: bool = False
    inject_snapshot_pause: float = None


REPO = str(REPO)
NETS = netgen.NETS
#: Earlier stages whose final weights a stage starts from (DepthNet: refine on the first two).
STAGE_INPUTS = {'depthnet_refine': ('depthnet_global', 'depthnet_gradient')}
FINAL = 'final.caffemodel'
DONE = 'done.json'
#: `resume_state`'s answer for `--resume auto`: the stage picks its newest good snapshot.
AUTO = 'auto'
LOSS_PREFIX = 'loss_'

SOLVER_TYPES = ('SGD', 'Nesterov', 'AdaGrad', 'RMSProp', 'AdaDelta', 'Adam')

Stage = collections.namedtuple('Stage', 'name solver inputs')


class Stopped(Exception):
    """A signal stopped the run after a snapshot; `code` is the exit status."""

    def __init__(self, code):
        super().__init__(code)
        self.code = code


# --- what to train ---------------------------------------------------------------------


def plan_stages(net, dataset, solver=None):
    """Stages to train in order: one per net, DepthNet's three, or the given solver file."""
    if solver is not None:
        return [Stage(os.path.splitext(os.path.basename(solver))[0], solver, ())]
    files = netgen.paths(net, dataset, root=REPO)
    stages = files['stages'] if 'stages' in files else {net: files}
    out = [Stage(name, p['solver'], STAGE_INPUTS.get(name, ())) for name, p in stages.items()]
    missing = [s.solver for s in out if not os.path.isfile(s.solver)]
    if missing:
        raise ToolError(
            'no solver %s: generate the nets first (`python -m netgen --net %s '
            '--dataset %s`)' % (missing[0], net, dataset)
        )
    return out


def stage_dir(run_dir, stages, stage):
    """A single stage trains in the run directory itself, several in one subdirectory each."""
    return run_dir if len(stages) == 1 else os.path.join(run_dir, stage.name)


def snapshot_iteration(path):
    match = re.search(r'_iter_(\d+)\.(solverstate|caffemodel)$', path)
    return int(match.group(1)) if match else -1


def newest_state(directory):
    states = glob.glob(os.path.join(directory, 'snapshots', '*_iter_*.solverstate'))
    return max(states, key=snapshot_iteration) if states else None


def read_done(directory):
    path = os.path.join(directory, DONE)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def iteration_seed(seed, iteration):
    """Caffe's RNG seed for one iteration: dropout masks then depend on (seed, iteration)
    only, so that a resumed run draws the masks an uninterrupted run draws."""
    return (seed * 1000003 + iteration) % 2**31


def link_or_copy(src, dst):
    if os.path.lexists(dst):
        os.remove(dst)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


# --- initialisation --------------------------------------------------------------------


def warn_random(log, part, flag, paper, filler):
    fillers = "the nets' Gaussian fillers" if filler == 'as-generated' else filler + ' fillers'
    text = (
        'RANDOM INIT: no %s given: %s starts from random weights (%s), not from the '
        'pretrained model of paper %s. Results will NOT be comparable to the paper.' % (flag, part, fillers, paper)
    )
    bar = '!' * 78
    tqdm.write('%s\n%s\n%s' % (bar, text, bar), file=sys.stderr)
    log.write('warning', message=text)


def initialise(net, stage, options, run_dir, stages, log, train_net_path=None):
    """Surgery on a fresh stage net (paper L297-304). Returns the layers copied per source."""
    say = lambda message: tqdm.write(message)  # noqa: E731
    copied = {}
    has_vgg = all(n in net.params for n in surgery.VGG_LAYERS)
    frozen = solver_config.frozen_layers(read_net(train_net_path)) if train_net_path else set()
    depthnet_layers = surgery.depthnet_targets(net, hybrid=has_vgg, frozen=frozen)
    if has_vgg:
        if options.init_deeplab:
            copied['deeplab'] = surgery.init_from_deeplab(net, options.init_deeplab, say)
        else:
            warn_random(
                log,
                'the VGG feature net and ASPP of %s' % stage.name,
                '--init-deeplab',
                "L297-298, L301-302 (DeepLab's ImageNet model)",
                options.filler,
            )
    if depthnet_layers:
        if options.init_depthnet:
            copied['depthnet'] = surgery.init_from_depthnet(net, options.init_depthnet, depthnet_layers, say)
        elif has_vgg:  # A2: the paper starts its global net from DepthNet's model
            warn_random(
                log,
                'the global depth net of %s' % stage.name,
                '--init-depthnet',
                "L302-303 (DepthNet's model)",
                options.filler,
            )
    for name in stage.inputs:
        weights = os.path.join(stage_dir(run_dir, stages, Stage(name, None, ())), FINAL)
        if not os.path.isfile(weights):
            raise ToolError('stage %s needs the weights of stage %s, but %s is missing' % (stage.name, name, weights))
        copied[name] = surgery.copy_shared_layers(net, weights, say)
    for weights in options.weights:
        copied[weights] = surgery.copy_shared_layers(net, weights, say, required=len(stages) == 1)
    if options.init_classifier:
        copied['classifier'] = fit_classifier(net, train_net_path, options.init_classifier, say)
    log.write('init', stage=stage.name, copied=copied)
    return copied


def fit_classifier(net, train_net_path, batches, say):
    """--init-classifier (demo only): fc8_i by ridge regression on the features of a TEST-phase
    twin of the train net that shares its weights (tools.classifier_init)."""
    if any(classifier_init.SCORES % b not in net.params for b in classifier_init.BRANCHES):
        raise ToolError('--init-classifier: the net has no ASPP classifier (fc8_1..fc8_4)')
    twin = caffe.Net(train_net_path, caffe.TEST)
    twin.share_with(net)
    accuracy = classifier_init.init_classifier(net, twin, batches, say)
    del twin
    return dict(batches=batches, pixel_accuracy=accuracy)


def fit_depth(net, train_net_path, batches, say):
    """--probe-depth (demo only): refine_conv5 by ridge regression on the refine_conv4 features
    of a TEST-phase twin of the train net that shares its weights (tools.training.depth_fit)."""
    if 'refine_conv5' not in net.params:
        raise ToolError('--probe-depth: the net has no refining net (refine_conv5)')
    twin = caffe.Net(train_net_path, caffe.TEST)
    twin.share_with(net)
    result = fit_last_depth_layer(net, twin, data_params(read_net(train_net_path)), batches, say)
    del twin
    return result


def check_init_flags(options, stages):
    """Refuse an init flag that no stage can use, before anything is built."""
    names = [s.name for s in stages]
    if options.init_deeplab and not any(n in ('a1', 'a2', 'deeplab_aspp') for n in names) and options.solver is None:
        raise ToolError('--init-deeplab: %s has no VGG feature net (a1, a2, deeplab_aspp have)' % options.net)
    if (
        options.init_depthnet
        and not any(n == 'a2' or n.startswith('depthnet') for n in names)
        and options.solver is None
    ):
        raise ToolError('--init-depthnet: %s has no DepthNet part to initialise (a2 and depthnet have)' % options.net)
    for path in [options.init_deeplab, options.init_depthnet] + options.weights:
        if path and not os.path.isfile(path):
            raise ToolError('weights file %s does not exist' % path)


# --- one stage -------------------------------------------------------------------------


def replay_data(net, batches, desc):
    """Bring every Python data layer of `net` to batch `batches`: `skip_batches(n)` when the
    layer offers it, else its forward pass is replayed `batches` times (exact, slower).
    Returns {layer name: 'skip_batches' or 'replay'}."""
    how = {}
    for index, (name, layer) in enumerate(zip(net._layer_names, net.layers)):
        if layer.type != 'Python' or batches <= 0:
            continue
        if hasattr(layer, 'skip_batches'):
            layer.skip_batches(batches)
            how[name] = 'skip_batches'
        else:
            for _ in tqdm(
                range(batches),
                desc='%s: replaying %s to batch %d' % (desc, name, batches),
                leave=False,
                disable=batches < 50,
            ):
                net._forward(index, index)
            how[name] = 'replay'
    return how


def loss_names(net):
    return [name for name in net.blobs if name.startswith(LOSS_PREFIX)]


def test_losses(test_net, names, iterations):
    sums = dict.fromkeys(names, 0.0)
    for _ in range(iterations):
        test_net.forward()
        for name in names:
            sums[name] += float(test_net.blobs[name].data)
    return {name: value / iterations for name, value in sums.items()}


class StageRun:
    """Training of one stage: solver, snapshots, logging, guards."""

    def __init__(self, stage, stages, options, run_dir, log, stop, world=parallel.SINGLE):
        self.stage, self.options, self.log, self.stop, self.world = stage, options, log, stop, world
        self.dir = stage_dir(run_dir, stages, stage)
        self.source = read_solver(stage.solver)
        self.solver_path, self.param, sources = solver_config.write_run_copy(
            stage.solver,
            self.dir,
            stage.name,
            base_dir=os.getcwd() if options.solver else REPO,
            max_iter=options.iters,
            seed=options.seed,
            base_lr=world.base_lr(options.base_lr, self.source.base_lr, options.lr_scaling),
            batch_size=options.batch,
            data_root=options.data,
            keep_test_net=options.test_every > 0,
            filler=options.filler,
            solver_type=options.solver_type,
            loss_weights=dict(options.loss_weight),
        )
        data_checks.check_databases(sources, options.dataset, self.param.train_net)
        world.shard_data(self.param.train_net)  # rank/world of each HybridData layer
        self.max_iter = self.param.max_iter
        self.snapshot_every = options.snapshot_every or self.source.snapshot
        self.display = options.display or self.source.display or 20
        self.last_snapshot = None

    def build(self, state, run_dir, stages):
        try:
            self.solver = caffe.get_solver(self.solver_path)
        except Exception as err:  # a Python layer's setup (the data layer) raises through Caffe
            raise ToolError(
                '%s: building the nets failed: %s: %s' % (self.solver_path, type(err).__name__, err)
            ) from None
        self.net = self.solver.net
        state = self.world.agree(self.resume_from(state))  # rank 0's snapshot on every rank
        if state:
            tqdm.write('%s: resuming from %s' % (self.stage.name, state))
            self.solver.restore(state)
        for net in [self.net] + list(self.solver.test_nets):
            check_fixed_weights(net)  # the prototxt's blobs (netgen), unless a model overwrote them
        if state:
            self.last_snapshot = state
            data = replay_data(self.net, self.solver.iter, self.stage.name)
            if self.solver.test_nets and self.options.test_every:
                replay_data(
                    self.solver.test_nets[0],
                    self.solver.iter // self.options.test_every * self.options.test_iters,
                    self.stage.name + ' (test net)',
                )
            self.log.write('resume', stage=self.stage.name, iter=self.solver.iter, state=state, data=data)
        elif self.world.main:  # the other ranks receive rank 0's weights (join)
            initialise(self.net, self.stage, self.options, run_dir, stages, self.log, self.param.train_net)
        self.losses = loss_names(self.net)
        if not self.losses:
            raise ToolError('%s: the train net has no loss top named %s*' % (self.solver_path, LOSS_PREFIX))
        if (self.options.init_classifier or self.options.probe_classifier) and any(
            classifier_init.SCORES % b not in self.net.params for b in classifier_init.BRANCHES
        ):
            raise ToolError('--init-classifier / --probe-classifier: the net has no ASPP classifier (fc8_1..fc8_4)')
        self.weights = self.net.blob_loss_weights
        self.batch = self.net.blobs[self.net.inputs[0] if self.net.inputs else next(iter(self.net.blobs))].data.shape[0]
        self.world.join(self)

    def resume_from(self, state):
        """The snapshot to restore: `state` checked (`--resume FILE`), the newest good one
        ('auto'), or None (a fresh start; also when every snapshot is torn or poisoned)."""
        snapshots.clear_partial(self.dir)
        if state is None:
            return None
        if state != AUTO:
            snapshots.check_named(state, self.net, self.param.type)
            return state
        state, skipped = snapshots.newest_good(self.dir, self.net, self.param.type, tqdm.write)
        if skipped:
            self.log.write('skipped', stage=self.stage.name, snapshots=[dict(state=p, reason=r) for p, r in skipped])
            if state is None:
                tqdm.write('%s: no snapshot to resume from: starting from iteration 0' % self.stage.name)
        return state

    def snapshot(self):
        """Write a snapshot pair atomically (`tools.training.snapshots`); one that is not
        finite is not kept and stops the run."""
        state, why = snapshots.write(self.solver, self.param.snapshot_prefix, self.options.inject_snapshot_pause)
        if why:
            self.log.write('snapshot_rejected', stage=self.stage.name, iter=self.solver.iter, reason=why)
            if why.startswith(snapshots.NONFINITE):
                self.halt_nonfinite('the snapshot of iteration %d is not kept: %s' % (self.solver.iter, why))
            raise ToolError(
                '%s: snapshot of iteration %d failed: %s' % (self.param.snapshot_prefix, self.solver.iter, why)
            )
        self.last_snapshot = state
        self.log.write('snapshot', stage=self.stage.name, iter=self.solver.iter, state=self.last_snapshot)
        return self.last_snapshot

    def halt_nonfinite(self, what, values=None):
        """Log, flush and leave without running any destructor (see tools.train_guard)."""
        it = self.solver.iter
        kept = self.last_snapshot or 'none (no snapshot was written before the fault)'
        message = (
            '%s: %s at iteration %d (%s). Stopped before Caffe runs another forward pass '
            'on it. Last good snapshot: %s. Lower the learning rate (--base-lr, with '
            '--allow-changes) and resume from that snapshot with --resume.'
            % (
                self.stage.name,
                what,
                it,
                format_losses(values)
                if values
                else 'lr %.3g' % solver_config.learning_rate(self.param, max(it - 1, 0)),
                kept,
            )
        )
        self.log.write(
            'stop', stage=self.stage.name, iter=it, reason='nonfinite', message=message, state=self.last_snapshot
        )
        self.log.close()
        self.bar.close()
        sys.stdout.flush()
        sys.stderr.write('\nERROR: %s\n' % message)
        sys.stderr.flush()
        os._exit(EXIT_NONFINITE)

    def run(self):
        options, solver = self.options, self.solver
        self.bar = tqdm(
            total=self.max_iter,
            initial=solver.iter,
            desc=self.stage.name,
            unit='it',
            dynamic_ncols=True,
            disable=options.quiet,
        )
        while True:
            if self.world.stop_agreed(self.stop, solver.iter):
                if self.last_snapshot is None or snapshot_iteration(self.last_snapshot) != solver.iter:
                    self.snapshot()
                message = '%s: stopped by %s at iteration %d; snapshot %s (continue with --resume auto)' % (
                    self.stage.name,
                    self.stop.name,
                    solver.iter,
                    self.last_snapshot,
                )
                self.log.write(
                    'stop',
                    stage=self.stage.name,
                    iter=solver.iter,
                    reason=self.stop.name,
                    message=message,
                    state=self.last_snapshot,
                )
                self.bar.close()
                tqdm.write(message, file=sys.stderr)
                raise Stopped(guard.EXIT_SIGNAL[self.stop.signum])
            if solver.iter >= self.max_iter:
                break
            if options.check_weights_every and solver.iter % options.check_weights_every == 0:
                bad = guard.nonfinite_params(self.net)
                if bad:
                    self.halt_nonfinite('weights of %s are not finite' % ', '.join(bad))
            self.step()
        if options.probe_classifier:
            probe = fit_classifier(self.net, self.param.train_net, options.probe_classifier, tqdm.write)
            self.log.write('probe', stage=self.stage.name, iter=solver.iter, **probe)
        if options.probe_depth:
            probe = fit_depth(self.net, self.param.train_net, options.probe_depth, tqdm.write)
            self.log.write('probe_depth', stage=self.stage.name, iter=solver.iter, **probe)
        if (
            options.probe_classifier
            or options.probe_depth
            or self.last_snapshot is None
            or snapshot_iteration(self.last_snapshot) != solver.iter
        ):
            self.snapshot()
        self.bar.close()
        final = os.path.join(self.dir, FINAL)
        link_or_copy(self.last_snapshot[: -len('.solverstate')] + '.caffemodel', final)
        with open(os.path.join(self.dir, DONE), 'w') as f:
            json.dump(dict(iter=solver.iter, weights=final), f)
        self.log.write('done', stage=self.stage.name, iter=solver.iter, weights=final)
        return final

    def step(self):
        options, solver = self.options, self.solver
        it = solver.iter
        lr = solver_config.learning_rate(self.param, it)
        caffe.set_random_seed(self.world.rng_seed(iteration_seed(options.seed, it)))
        start = time.perf_counter()
        solver.step(1)
        seconds = time.perf_counter() - start
        values = {name: float(self.net.blobs[name].data) for name in self.losses}
        bad = guard.nonfinite_losses(values)
        if bad:
            self.halt_nonfinite('loss %s is not finite' % ', '.join(bad), values)
        total = sum(self.weights.get(name, 0.0) * v for name, v in values.items())
        row = self.log.write(
            'iter',
            stage=self.stage.name,
            iter=solver.iter,
            lr=lr,
            loss=total,
            images_per_s=self.batch * self.world.size / seconds,
            **values,
        )
        self.bar.set_postfix_str(format_losses(row), refresh=False)
        self.bar.update(1)
        if solver.iter % self.display == 0 or solver.iter == self.max_iter:
            tqdm.write(
                '%s iter %d/%d lr %.3g %s  %.2f img/s'
                % (self.stage.name, solver.iter, self.max_iter, lr, format_losses(row), row['images_per_s'])
            )
        if options.inject_stop_at and solver.iter == options.inject_stop_at:
            self.stop.signum = signal.SIGINT
        if options.inject_nan_at and solver.iter == options.inject_nan_at:
            first = next(iter(self.net.params.values()))[0]
            first.data.flat[0] = float('nan')  # test hook: a diverged update
        if options.test_every and solver.test_nets and solver.iter % options.test_every == 0:
            val = test_losses(solver.test_nets[0], self.losses, options.test_iters)
            val_row = self.log.write('val', stage=self.stage.name, iter=solver.iter, **val)
            tqdm.write('%s iter %d val %s' % (self.stage.name, solver.iter, format_losses(val_row)))
        if self.snapshot_every and solver.iter % self.snapshot_every == 0:
            self.snapshot()


# --- the run ---------------------------------------------------------------------------


def resume_state(options, directory, single):
    """The .solverstate a stage continues from, or None to start it fresh. `--resume FILE`
    applies to the only stage, or to the stage whose snapshots directory holds FILE (the
    others continue as with auto)."""
    if options.resume is None:
        if newest_state(directory) or read_done(directory):
            raise ToolError(
                '%s already holds a run: pass --resume auto to continue it, or choose another --out' % directory
            )
        return None
    if options.resume != 'auto':
        in_stage = os.path.dirname(os.path.abspath(options.resume)) == os.path.join(
            os.path.abspath(directory), 'snapshots'
        )
        if in_stage or single:
            return options.resume
    return AUTO


def train(options, stages=None):
    """Train every stage (default: those of `options`); returns the final weights' path.
    Raises Stopped (a signal), ToolError, ConfigError, SurgeryError (bad input)."""
    stages = stages or plan_stages(options.net, options.dataset, options.solver)
    check_init_flags(options, stages)
    if options.resume not in (None, 'auto'):
        if not options.resume.endswith('.solverstate'):
            raise ToolError(
                '--resume %s: give a .solverstate (or auto); to start from a '
                ".caffemodel's weights use --weights" % options.resume
            )
        if not os.path.isfile(options.resume):
            raise ToolError('--resume %s: no such file' % options.resume)
    world = parallel.setup(options.gpu, options.collective_timeout)  # SINGLE unless torchrun launched it
    use_device(world.device(options.gpu))
    options = world.rank_options(options)
    run_dir = os.path.abspath(options.out or os.path.join(REPO, 'runs', '%s_%s' % (options.net, options.dataset)))
    run_dir = world.private_dir(run_dir)  # ranks > 0: their own temporary directory
    os.makedirs(run_dir, exist_ok=True)
    held = rundir.lock(run_dir)
    try:
        options, changes = open_run(options, run_dir, stages)
        return train_stages(options, stages, run_dir, changes, world)
    finally:
        rundir.unlock(held)


def open_run(options, run_dir, stages):
    """Refuse a run directory that holds a run unless resuming; record or compare its
    settings (`tools.training.run_dir`). Returns (the options, with the recorded value of each
    defining option not given when resuming, the changes allowed by --allow-changes)."""
    dirs = [stage_dir(run_dir, stages, s) for s in stages]
    trained = any(snapshots.any_snapshot(d) or read_done(d) for d in dirs)
    if options.resume is None and trained:
        raise ToolError('%s already holds a run: pass --resume auto to continue it, or choose another --out' % run_dir)
    options = rundir.inherit(run_dir, options, trained)
    solvers = [read_solver(s.solver) for s in stages]
    resolved = dict(  # a default given explicitly is no change
        iters=[options.iters or p.max_iter for p in solvers],
        base_lr=[options.base_lr or p.base_lr for p in solvers],
        solver_type=[options.solver_type or p.type for p in solvers],
    )
    return options, rundir.check_settings(run_dir, options, trained, options.allow_changes, resolved)


def train_stages(options, stages, run_dir, changes=(), world=parallel.SINGLE):
    """The stages in the (locked) run directory; returns the final weights' path."""
    log = TrainLog(os.path.join(run_dir, LOG_FILE))
    log.write('start', args=dataclasses.asdict(options), stages=[s.name for s in stages])
    if changes:
        message = 'settings changed (--allow-changes): %s' % '; '.join('%s %s -> %s' % c for c in changes)
        tqdm.write(message, file=sys.stderr)
        log.write('settings_changed', changes={f: [was, now] for f, was, now in changes}, message=message)
    stop = guard.StopFlag()
    world.log = log
    final = None
    try:
        for stage in stages:
            directory = stage_dir(run_dir, stages, stage)
            done = world.from_main(read_done, directory)  # rank 0's run directory decides
            if options.resume and done and done['iter'] >= (options.iters or read_solver(stage.solver).max_iter):
                tqdm.write('%s: done earlier (%d iterations), skipped' % (stage.name, done['iter']))
                final = done['weights']
                continue
            state = resume_state(options, directory, len(stages) == 1)
            run = StageRun(stage, stages, options, run_dir, log, stop, world)
            run.build(state, run_dir, stages)
            final = run.run()
            del run
        if os.path.abspath(final) != os.path.join(run_dir, FINAL):
            link_or_copy(final, os.path.join(run_dir, FINAL))
        log.write('finished', weights=os.path.join(run_dir, FINAL))
    finally:
        stop.restore()
        log.close()
        if not options.no_plot:
            try:
                plot.plot(run_dir)
            except Exception as err:  # the plot must never hide the run's outcome
                tqdm.write('note: no loss plot (%s)' % err, file=sys.stderr)
        world.finish(clean=sys.exc_info()[0] in (None, Stopped))  # ranks leave together (torchrun ends the rest)
    return os.path.join(run_dir, FINAL)
