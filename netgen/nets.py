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
Spec = collections.namedtuple('Spec', 'name body seg depth_gt losses outputs batch '
                                      'solver doc')


def _a1(n, num_classes, phase):
    feat = B.vgg16(n, n.data)
    B.aspp(n, feat, num_classes, phase == 'train')
    B.refine_net(n, n.data, feat, 512, random_std=config.RANDOM_INIT_STD)


def _a2(n, num_classes, phase):
    feat = B.vgg16(n, n.data)
    B.aspp(n, feat, num_classes, phase == 'train')
    glob = B.global_net(n, n.data, phase == 'train', expose=phase == 'deploy')
    ctx = B.concat41(n, 'refine_context', [glob, feat])
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


HYBRID_SOLVER = Solver(2.5e-6, 'poly', 100000, 0.9, 0.005, 10000)   # paper L305-309
D81 = (('depth_gt_81', config.DEPTH_SIZE),)
D41 = (('depth_gt_41', config.SCORE_SIZE),)

#: losses: (kind, head, prediction blob, ground-truth top); kind 'seg' uses `label`.
SPECS = collections.OrderedDict((s.name, s) for s in [
    Spec('a1', _a1, True, D81,
         [('seg', 'seg', 'fc8', 'label'), ('depth', 'depth', DEPTH, 'depth_gt_81')],
         (SEG_PROB, DEPTH), 7, HYBRID_SOLVER,
         'HybridNet A1: shared VGG16; ASPP decodes segmentation, the refining net depth'),
    Spec('a2', _a2, True, D81,
         [('seg', 'seg', 'fc8', 'label'), ('depth', 'depth', DEPTH, 'depth_gt_81')],
         (SEG_PROB, DEPTH, DEPTH_GLOBAL), 7, HYBRID_SOLVER,
         'HybridNet A2: shared VGG16 replaces the gradient net; global net for depth only'),
    Spec('deeplab_aspp', _deeplab, True, (), [('seg', 'seg', 'fc8', 'label')],
         (SEG_PROB,), 10, Solver(1e-3, 'poly', 20000, 0.9, 5e-4, 2000),
         'DeepLab-v2 VGG16 ASPP-L (the segmentation parent)'),
    Spec('depthnet_global', _global, False, D41,
         [('depth', 'global', DEPTH_GLOBAL, 'depth_gt_41')],
         (DEPTH_GLOBAL,), 32, Solver(5e-4, 'fixed', 100000, 0.9, 0.005, 10000),
         'DepthNet stage 1: global depth net'),
    Spec('depthnet_gradient', _gradient, False, D41,
         [('gradient', 'gradient', GRADIENT, 'depth_gt_41')],
         (GRADIENT,), 32, Solver(2.5e-4, 'fixed', 100000, 0.9, 0.005, 10000),
         'DepthNet stage 2: gradient net'),
    Spec('depthnet_refine', _refine, False, D81,
         [('depth', 'depth', DEPTH, 'depth_gt_81')],
         (DEPTH, DEPTH_GLOBAL), 16,
         Solver(2.5e-5, 'fixed', 100000, 0.9, 0.005, 10000),
         'DepthNet stage 3: refining net on the frozen global and gradient nets'),
])

PHASES = ('train', 'test', 'deploy')


def source(dataset, phase):
    split = config.TRAIN_SPLIT if phase == 'train' else config.TEST_SPLIT[dataset]
    return 'data/%s/%s' % (dataset, split)


def seg_loss_weight(spec):
    """alpha = 1000 where segmentation is trained jointly with depth, else 1."""
    return config.SEG_LOSS_WEIGHT if spec.depth_gt else 1.0


def build(net, dataset, phase, data_layer='python', batch_size=None):
    """NetParameter of stage/net `net` ('a1', ..., 'depthnet_refine'; 'depthnet' means
    its joint deploy net) for `dataset` and `phase` ('train', 'test', 'deploy').

    data_layer: 'python' (`data_prep.layers.HybridData`) or 'input' (Input layers with
    the same tops; train/test only). batch_size: default the recipe's (train), 1 (test,
    deploy)."""
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
    if batch_size is None:
        batch_size = spec.batch if train else 1
    n = NetSpec()
    if phase == 'deploy':
        B.deploy_input(n, batch_size)
    else:
        B.data_layer(n, data_layer, source(dataset, phase), batch_size, train,
                     config.SCORE_SIZE if spec.seg else None,
                     [s for _, s in spec.depth_gt], [t for t, _ in spec.depth_gt])
    spec.body(n, num_classes, phase)
    if phase == 'deploy':
        if spec.seg:
            n[SEG_PROB] = L.Softmax(n.fc8)
    else:
        for kind, head, pred, gt in spec.losses:
            if kind == 'seg':
                B.seg_loss(n, n[pred], seg_loss_weight(spec))
            elif kind == 'depth':
                B.depth_losses(n, head, n[pred], n[gt])
            else:
                B.gradient_loss(n, head, n[pred], n[gt])
    proto = n.to_proto()
    joint = spec.name == 'depthnet_refine' and phase == 'deploy'
    proto.name = '%s_%s_%s' % ('depthnet' if joint else spec.name, dataset, phase)
    return proto
