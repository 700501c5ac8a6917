"""The nets: one `Spec` per trainable net, built into train / test / deploy protos.

A1, A2 and DeepLab-ASPP are single nets; DepthNet is trained in three stages
(`depthnet_global`, `depthnet_gradient`, `depthnet_refine`), and its joint deploy net is
the refine stage's deploy net.
"""
import collections

from caffe import layers as L
from caffe.net_spec import NetSpec

from . import blocks as B
from . import config

#: Deploy output blobs (docs/DESIGN.md) and the gradient stage's `gradient` map.
SEG_PROB, DEPTH, DEPTH_GLOBAL, GRADIENT = 'seg_prob', 'depth', 'depth_global', 'gradient'

Solver = collections.namedtuple('Solver', 'base_lr lr_policy max_iter momentum '
                                          'weight_decay snapshot')
#: A training recipe: solver, train batch size, loss_weight of `loss_seg` (None: the
#: net has no segmentation loss).
Recipe = collections.namedtuple('Recipe', 'solver batch seg_weight')
#: parent: the single-task parent's own recipe (baselines only; None for A1, A2), used
#: when `config.BASELINE_RECIPE` is 'parent'; otherwise every net trains with `hybrid`.
Spec = collections.namedtuple('Spec', 'name body seg depth_gt losses outputs parent doc')

#: VGG blobs of 512 x 41 x 41 that may feed the refining net (`config.REFINE_VGG_BLOB`).
VGG_41 = tuple('conv%d_%d' % (g, i) for g in (4, 5) for i in (1, 2, 3)) + ('pool4', 'pool5')


def vgg_context(n):
    """The VGG blob the refining net reads in A1 and A2 (`config.REFINE_VGG_BLOB`)."""
    name = config.REFINE_VGG_BLOB
    if name not in VGG_41:
        raise ValueError('REFINE_VGG_BLOB must be one of %s, not %r' % (
            ', '.join(VGG_41), name))
    return n[name]


def _a1(n, num_classes, phase):
    B.aspp(n, B.vgg16(n, n.data), num_classes, phase == 'train')
    B.refine_net(n, n.data, vgg_context(n), 512, random_std=config.RANDOM_INIT_STD)


def _a2(n, num_classes, phase):
    B.aspp(n, B.vgg16(n, n.data), num_classes, phase == 'train')
    glob = B.global_net(n, n.data, phase == 'train', expose=phase == 'deploy')
    ctx = B.concat41(n, 'refine_context', [glob, vgg_context(n)])
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
    ctx = B.concat41(n, 'refine_context', [glob, grad])
    B.refine_net(n, n.data, ctx, 1 + 2)


#: The hybrid nets' configuration (paper L305-309): 100K iterations, lr 2.5e-6, poly
#: (power 0.9: DeepLab's), momentum 0.9, weight decay 0.005, batch 7; alpha = 1000.
HYBRID_SOLVER = Solver(2.5e-6, 'poly', 100000, 0.9, 0.005, 10000)
HYBRID_BATCH = 7
D81 = (('depth_gt_81', config.DEPTH_SIZE),)
D41 = (('depth_gt_41', config.SCORE_SIZE),)

#: losses: (kind, head, prediction blob, ground-truth top); kind 'seg' uses `label`.
SPECS = collections.OrderedDict((s.name, s) for s in [
    Spec('a1', _a1, True, D81,
         [('seg', 'seg', 'fc8', 'label'), ('depth', 'depth', DEPTH, 'depth_gt_81')],
         (SEG_PROB, DEPTH), None,
         'HybridNet A1: shared VGG16; ASPP decodes segmentation, the refining net depth'),
    Spec('a2', _a2, True, D81,
         [('seg', 'seg', 'fc8', 'label'), ('depth', 'depth', DEPTH, 'depth_gt_81')],
         (SEG_PROB, DEPTH, DEPTH_GLOBAL), None,
         'HybridNet A2: shared VGG16 replaces the gradient net; global net for depth only'),
    Spec('deeplab_aspp', _deeplab, True, (), [('seg', 'seg', 'fc8', 'label')],
         (SEG_PROB,), Recipe(Solver(1e-3, 'poly', 20000, 0.9, 5e-4, 2000), 10, 1.0),
         'DeepLab-v2 VGG16 ASPP-L (the segmentation baseline)'),
    Spec('depthnet_global', _global, False, D41,
         [('depth', 'global', DEPTH_GLOBAL, 'depth_gt_41')], (DEPTH_GLOBAL,),
         Recipe(Solver(5e-4, 'fixed', 100000, 0.9, 0.005, 10000), 32, None),
         'DepthNet stage 1: global depth net'),
    Spec('depthnet_gradient', _gradient, False, D41,
         [('gradient', 'gradient', GRADIENT, 'depth_gt_41')], (GRADIENT,),
         Recipe(Solver(2.5e-4, 'fixed', 100000, 0.9, 0.005, 10000), 32, None),
         'DepthNet stage 2: gradient net'),
    Spec('depthnet_refine', _refine, False, D81,
         [('depth', 'depth', DEPTH, 'depth_gt_81')], (DEPTH, DEPTH_GLOBAL),
         Recipe(Solver(2.5e-5, 'fixed', 100000, 0.9, 0.005, 10000), 16, None),
         'DepthNet stage 3: refining net on the frozen global and gradient nets'),
])


def check_recipe(name):
    if name not in config.BASELINE_RECIPES:
        raise ValueError('unknown baseline recipe %r; valid: %s' % (
            name, ', '.join(config.BASELINE_RECIPES)))
    return name


def recipe(net, baseline_recipe=None):
    """Recipe of stage/net `net`: the hybrid configuration for A1 and A2 and, under the
    'hybrid' baseline recipe (`config.BASELINE_RECIPE` unless given), for the baselines;
    the parent's own under 'parent'."""
    spec = SPECS[net]
    which = check_recipe(baseline_recipe or config.BASELINE_RECIPE)
    if which == 'parent' and spec.parent is not None:
        return spec.parent
    return Recipe(HYBRID_SOLVER, HYBRID_BATCH,
                  config.SEG_LOSS_WEIGHT if spec.seg else None)


def depth_targets(spec):
    """(depth ground-truth tops, losses) of `spec`, with A2's optional global loss."""
    depth_gt, losses = spec.depth_gt, list(spec.losses)
    if spec.name == 'a2' and config.A2_GLOBAL_LOSS:
        depth_gt = depth_gt + D41
        losses.append(('depth', 'global', DEPTH_GLOBAL, 'depth_gt_41'))
    return depth_gt, losses

PHASES = ('train', 'test', 'deploy')


def source(dataset, phase):
    split = config.TRAIN_SPLIT if phase == 'train' else config.TEST_SPLIT[dataset]
    return 'data/%s/%s' % (dataset, split)


def apply_lr_mult_overrides(proto):
    """`config.LR_MULT_OVERRIDES`: {layer: (weight lr_mult, bias lr_mult)}; layers the
    net does not have are ignored (one table serves every net)."""
    for layer in proto.layer:
        mults = config.LR_MULT_OVERRIDES.get(layer.name)
        if mults is None:
            continue
        if len(mults) != len(layer.param):
            raise ValueError('LR_MULT_OVERRIDES[%r]: %d values for %d param blobs' % (
                layer.name, len(mults), len(layer.param)))
        for p, m in zip(layer.param, mults):
            p.lr_mult = m


def build(net, dataset, phase, data_layer='python', batch_size=None, baseline_recipe=None):
    """NetParameter of stage/net `net` ('a1', ..., 'depthnet_refine'; 'depthnet' means
    its joint deploy net) for `dataset` and `phase` ('train', 'test', 'deploy').

    data_layer: 'python' (`data_prep.layers.HybridData`) or 'input' (Input layers with
    the same tops; train/test only). batch_size: default the recipe's (train), 1 (test,
    deploy). baseline_recipe: 'hybrid' or 'parent' (default `config.BASELINE_RECIPE`):
    the baselines' batch size and DeepLab-ASPP's seg loss weight."""
    if net == 'depthnet':
        if phase != 'deploy':
            raise ValueError("'depthnet' has only a joint deploy net; train/test nets "
                             "are per stage: %s" % ', '.join(
                                 s for s in SPECS if s.startswith('depthnet_')))
        net = 'depthnet_refine'
    if net not in SPECS:
        raise ValueError('unknown net %r; valid: %s, depthnet (deploy)' % (
            net, ', '.join(SPECS)))
    spec = SPECS[net]
    num_classes = config.NUM_CLASSES[dataset]
    if phase not in PHASES:
        raise ValueError('phase must be one of %s, not %r' % (PHASES, phase))
    train = phase == 'train'
    rec = recipe(net, baseline_recipe)
    if batch_size is None:
        batch_size = rec.batch if train else 1
    depth_gt, losses = depth_targets(spec)
    n = NetSpec()
    if phase == 'deploy':
        B.deploy_input(n, batch_size)
    else:
        B.data_layer(n, data_layer, source(dataset, phase), batch_size, train,
                     config.SCORE_SIZE if spec.seg else None,
                     [s for _, s in depth_gt], [t for t, _ in depth_gt])
    spec.body(n, num_classes, phase)
    if phase == 'deploy':
        if spec.seg:
            n[SEG_PROB] = L.Softmax(n.fc8)
    else:
        for kind, head, pred, gt in losses:
            if kind == 'seg':
                B.seg_loss(n, n[pred], rec.seg_weight)
            elif kind == 'depth':
                B.depth_losses(n, head, n[pred], n[gt])
            else:
                B.gradient_loss(n, head, n[pred], n[gt])
    proto = n.to_proto()
    apply_lr_mult_overrides(proto)
    joint = spec.name == 'depthnet_refine' and phase == 'deploy'
    proto.name = '%s_%s_%s' % ('depthnet' if joint else spec.name, dataset, phase)
    return proto
