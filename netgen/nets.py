"""The nets: one `Spec` per trainable net, built into train / test / deploy protos.

A1, A2 and DeepLab-ASPP are single nets; DepthNet is trained in three stages
(`depthnet_global`, `depthnet_gradient`, `depthnet_refine`, paper L183-188), and its
joint deploy net is the refine stage's deploy net (`netgen.names` knows these names).
"""

import collections
import dataclasses
from typing import Callable, Optional

from caffe import layers as L
from caffe.net_spec import NetSpec

from . import blocks as B
from . import config, names
from .fixed_weights import write_fixed_blobs

#: Deploy output blobs (docs/DESIGN.md) and the gradient stage's `gradient` map.
SEG_PROB, DEPTH, DEPTH_GLOBAL, GRADIENT = 'seg_prob', 'depth', 'depth_global', 'gradient'


@dataclasses.dataclass(frozen=True, kw_only=True)
class Solver:
    """The SolverParameter fields a recipe sets (`generate.solver`); lr_policy 'poly'
    gets power 0.9 (DeepLab's)."""

    base_lr: float
    lr_policy: str
    max_iter: int
    momentum: float
    weight_decay: float
    snapshot: int


@dataclasses.dataclass(frozen=True, kw_only=True)
class Recipe:
    """A training recipe: solver, train batch size, loss_weight of `loss_seg` (None: the
    net has no segmentation loss)."""

    solver: Solver
    batch: int
    seg_weight: Optional[float]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Loss:
    """One loss term of a train/test net, on prediction blob `pred` and ground-truth top
    `gt`. kind 'seg': `loss_seg` (paper's LS, L310-313; `gt` is `label`); 'depth':
    `loss_<head>_abs` and `loss_<head>_mvn` (LDabs, LDmvn, L314-321); 'gradient':
    DepthNet's `loss_<head>_mvn` on Prewitt targets (its gradient net, L258-259)."""

    kind: str
    head: str
    pred: str
    gt: str


#: Side of each depth ground-truth top the data layer serves (paper L255-257, L268).
GT_SIZES = {'depth_gt_81': config.DEPTH_SIZE, 'depth_gt_41': config.SCORE_SIZE}


def depth_gt(losses):
    """((top, side), ...) of the depth ground-truth tops `losses` read, in order."""
    tops = []
    for loss in losses:
        if loss.kind != 'seg' and loss.gt not in tops:
            tops.append(loss.gt)
    return tuple((t, GT_SIZES[t]) for t in tops)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Spec:
    """A trainable net. body(n, num_classes, phase) adds its layers after the data layer;
    seg: it segments (reads `label`, outputs `seg_prob`); losses: its `Loss` terms;
    outputs: its deploy net's outputs; parent: the single-task parent's own recipe
    (baselines only; None for A1, A2), used when `config.BASELINE_RECIPE` is 'parent';
    otherwise every net trains with the hybrid recipe (`recipe`)."""

    name: str
    body: Callable
    seg: bool
    losses: tuple
    outputs: tuple
    parent: Optional[Recipe]
    doc: str

    @property
    def depth_gt(self):
        """((top, side), ...): the depth ground truth its losses read."""
        return depth_gt(self.losses)


#: VGG blobs of 512 x 41 x 41 that may feed the refining net (`config.REFINE_VGG_BLOB`).
VGG_41 = tuple('conv%d_%d' % (g, i) for g in (4, 5) for i in (1, 2, 3)) + ('pool4', 'pool5')


def vgg_context(n):
    """The VGG blob the refining net reads in A1 and A2 (`config.REFINE_VGG_BLOB`)."""
    name = config.REFINE_VGG_BLOB
    if name not in VGG_41:
        raise ValueError('REFINE_VGG_BLOB must be one of %s, not %r' % (', '.join(VGG_41), name))
    return n[name]


def _a1(n, num_classes, phase):
    B.aspp(n, B.vgg16(n, n.data), num_classes, phase == 'train')
    B.refine_net(n, n.data, vgg_context(n), 512, random_std=config.RANDOM_INIT_STD)


def _a2(n, num_classes, phase):
    B.aspp(n, B.vgg16(n, n.data), num_classes, phase == 'train')
    std = config.RANDOM_INIT_STD if config.A2_GLOBAL_FC_FILLER == 'gaussian' else None
    glob = B.global_net(n, n.data, phase == 'train', random_std=std, expose=phase == 'deploy')
    ctx = B.concat41(n, 'refine_context', [B.global_context(n, glob), vgg_context(n)])
    B.refine_net(n, n.data, ctx, 1 + 512, random_std=config.RANDOM_INIT_STD)


def _deeplab(n, num_classes, phase):
    B.aspp(n, B.vgg16(n, n.data), num_classes, phase == 'train')


def _global(n, num_classes, phase):
    B.global_net(n, n.data, phase == 'train')


def _gradient(n, num_classes, phase):
    B.gradient_net(n, n.data)


def _refine(n, num_classes, phase):
    glob = B.global_net(n, n.data, False, frozen=True, expose=phase == 'deploy')
    grad = B.gradient_net(n, n.data, frozen=True)
    ctx = B.concat41(n, 'refine_context', [B.global_context(n, glob), grad])
    B.refine_net(n, n.data, ctx, 1 + 2)


#: The hybrid nets' configuration (paper L305-309): 100K iterations, lr 2.5e-6, poly
#: (power 0.9: DeepLab's), momentum 0.9, weight decay 0.005, batch 7; alpha = 1000.
HYBRID_SOLVER = Solver(
    base_lr=2.5e-6, lr_policy='poly', max_iter=100000, momentum=0.9, weight_decay=0.005, snapshot=10000
)
HYBRID_BATCH = 7

#: The loss terms (paper L310-325): segmentation, refined depth, global depth, gradient.
SEG_LOSS = Loss(kind='seg', head='seg', pred='fc8', gt='label')
DEPTH_LOSS = Loss(kind='depth', head='depth', pred=DEPTH, gt='depth_gt_81')
GLOBAL_LOSS = Loss(kind='depth', head='global', pred=DEPTH_GLOBAL, gt='depth_gt_41')
GRADIENT_LOSS = Loss(kind='gradient', head='gradient', pred=GRADIENT, gt='depth_gt_41')


#: Every trainable net, in `names.TRAINABLE` order.
SPECS = collections.OrderedDict(
    (s.name, s)
    for s in [
        Spec(
            name='a1',
            body=_a1,
            seg=True,
            losses=(SEG_LOSS, DEPTH_LOSS),
            outputs=(SEG_PROB, DEPTH),
            parent=None,
            doc=('HybridNet A1: shared VGG16; ASPP decodes segmentation, the refining net depth'),
        ),
        Spec(
            name='a2',
            body=_a2,
            seg=True,
            losses=(SEG_LOSS, DEPTH_LOSS),
            outputs=(SEG_PROB, DEPTH, DEPTH_GLOBAL),
            parent=None,
            doc=('HybridNet A2: shared VGG16 replaces the gradient net; global net for depth only'),
        ),
        Spec(
            name='deeplab_aspp',
            body=_deeplab,
            seg=True,
            losses=(SEG_LOSS,),
            outputs=(SEG_PROB,),
            parent=Recipe(
                solver=Solver(
                    base_lr=1e-3, lr_policy='poly', max_iter=20000, momentum=0.9, weight_decay=5e-4, snapshot=2000
                ),
                batch=10,
                seg_weight=1.0,
            ),
            doc='DeepLab-v2 VGG16 ASPP-L (the segmentation baseline)',
        ),
        Spec(
            name='depthnet_global',
            body=_global,
            seg=False,
            losses=(GLOBAL_LOSS,),
            outputs=(DEPTH_GLOBAL,),
            parent=Recipe(
                solver=Solver(
                    base_lr=5e-4, lr_policy='fixed', max_iter=100000, momentum=0.9, weight_decay=0.005, snapshot=10000
                ),
                batch=32,
                seg_weight=None,
            ),
            doc='DepthNet stage 1: global depth net',
        ),
        Spec(
            name='depthnet_gradient',
            body=_gradient,
            seg=False,
            losses=(GRADIENT_LOSS,),
            outputs=(GRADIENT,),
            parent=Recipe(
                solver=Solver(
                    base_lr=2.5e-4, lr_policy='fixed', max_iter=100000, momentum=0.9, weight_decay=0.005, snapshot=10000
                ),
                batch=32,
                seg_weight=None,
            ),
            doc='DepthNet stage 2: gradient net',
        ),
        Spec(
            name='depthnet_refine',
            body=_refine,
            seg=False,
            losses=(DEPTH_LOSS,),
            outputs=(DEPTH, DEPTH_GLOBAL),
            parent=Recipe(
                solver=Solver(
                    base_lr=2.5e-5, lr_policy='fixed', max_iter=100000, momentum=0.9, weight_decay=0.005, snapshot=10000
                ),
                batch=16,
                seg_weight=None,
            ),
            doc='DepthNet stage 3: refining net on the frozen global and gradient nets',
        ),
    ]
)


def check_recipe(name):
    if name not in config.BASELINE_RECIPES:
        raise ValueError('unknown baseline recipe %r; valid: %s' % (name, ', '.join(config.BASELINE_RECIPES)))
    return name


def recipe(net, baseline_recipe=None):
    """Recipe of stage/net `net`: the hybrid configuration for A1 and A2 and, under the
    'hybrid' baseline recipe (`config.BASELINE_RECIPE` unless given), for the baselines
    (paper L362-365); the parent's own under 'parent'."""
    spec = SPECS[net]
    which = check_recipe(baseline_recipe or config.BASELINE_RECIPE)
    if which == 'parent' and spec.parent is not None:
        return spec.parent
    return Recipe(solver=HYBRID_SOLVER, batch=HYBRID_BATCH, seg_weight=config.SEG_LOSS_WEIGHT if spec.seg else None)


def losses(spec):
    """The `Loss` terms of `spec`'s train/test nets: its own, plus A2's optional global
    loss (`config.A2_GLOBAL_LOSS`; the paper's LH, L322-325, has none)."""
    if spec.name == 'a2' and config.A2_GLOBAL_LOSS:
        return spec.losses + (GLOBAL_LOSS,)
    return spec.losses


PHASES = ('train', 'test', 'deploy')


def source(dataset, phase):
    split = config.TRAIN_SPLIT if phase == 'train' else config.TEST_SPLIT[dataset]
    return 'data/%s/%s' % (dataset, split)


def apply_lr_mult_overrides(proto, net=None):
    """`config.LR_MULT_OVERRIDES` (every net) over `config.DEPTHNET_LR_MULTS` (DepthNet's
    stages only): {layer: (weight lr_mult, bias lr_mult)}; layers the net does not have are
    ignored (one table serves every net)."""
    table = dict(config.DEPTHNET_LR_MULTS) if net and net.startswith('depthnet') else {}
    table.update(config.LR_MULT_OVERRIDES)
    for layer in proto.layer:
        mults = table.get(layer.name)
        if mults is None:
            continue
        if len(mults) != len(layer.param):
            raise ValueError(
                'LR_MULT_OVERRIDES[%r]: %d values for %d param blobs' % (layer.name, len(mults), len(layer.param))
            )
        for p, m in zip(layer.param, mults):
            p.lr_mult = m


def spec_for(net, phase):
    """The `Spec` that builds `net` in `phase`: an alias ('depthnet') has only its joint
    deploy net, that of the stage `names.deploy_spec_name` names."""
    if net in names.STAGES:
        if phase != 'deploy':
            raise ValueError(
                '%r has only a joint deploy net; train/test nets are per '
                'stage: %s' % (net, ', '.join(names.STAGES[net]))
            )
        net = names.deploy_spec_name(net)
    if net not in SPECS:
        raise ValueError(
            'unknown net %r; valid: %s, %s'
            % (net, ', '.join(SPECS), ', '.join('%s (deploy)' % a for a in names.JOINT_DEPLOY))
        )
    if phase not in PHASES:
        raise ValueError('phase must be one of %s, not %r' % (PHASES, phase))
    return SPECS[net]


def add_losses(n, terms, seg_weight):
    """The loss layers of `terms` (`Loss`es); `loss_seg` gets loss_weight `seg_weight`."""
    for loss in terms:
        if loss.kind == 'seg':
            B.seg_loss(n, n[loss.pred], seg_weight)
        elif loss.kind == 'depth':
            B.depth_losses(n, loss.head, n[loss.pred], n[loss.gt])
        else:
            B.gradient_loss(n, loss.head, n[loss.pred], n[loss.gt])


def build(net, dataset, phase, data_layer='python', batch_size=None, baseline_recipe=None):
    """NetParameter of stage/net `net` ('a1', ..., 'depthnet_refine'; 'depthnet' means
    its joint deploy net) for `dataset` and `phase` ('train', 'test', 'deploy').

    data_layer: 'python' (`data_prep.layers.HybridData`) or 'input' (Input layers with
    the same tops; train/test only). batch_size: default the recipe's (train), 1 (test,
    deploy). baseline_recipe: 'hybrid' or 'parent' (default `config.BASELINE_RECIPE`):
    the baselines' batch size and DeepLab-ASPP's seg loss weight."""
    spec = spec_for(net, phase)
    num_classes = config.NUM_CLASSES[dataset]
    train = phase == 'train'
    rec = recipe(spec.name, baseline_recipe)
    if batch_size is None:
        batch_size = rec.batch if train else 1
    terms = losses(spec)
    gt = depth_gt(terms)
    n = NetSpec()
    if phase == 'deploy':
        B.deploy_input(n, batch_size)
    else:
        B.data_layer(
            n,
            data_layer,
            source(dataset, phase),
            batch_size,
            train,
            config.SCORE_SIZE if spec.seg else None,
            [s for _, s in gt],
            [t for t, _ in gt],
            config.MAX_DEPTH.get(dataset),
        )
    spec.body(n, num_classes, phase)
    if phase == 'deploy':
        if spec.seg:
            n[SEG_PROB] = L.Softmax(n.fc8)
    else:
        add_losses(n, terms, rec.seg_weight)
    proto = n.to_proto()
    apply_lr_mult_overrides(proto, spec.name)
    write_fixed_blobs(proto)
    proto.name = '%s_%s_%s' % (names.deploy_name(spec.name) if phase == 'deploy' else spec.name, dataset, phase)
    return proto
