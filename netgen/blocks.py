"""NetSpec building blocks shared by the nets of `netgen.nets`.

Every function takes the `NetSpec` being built and adds named layers to it; the names
are part of the contract with the weight surgery (DeepLab's `conv1_1`..`fc8_4`) and
with `netgen.fixed_weights` (layers whose names start with `fixed_`).
"""

import json

from caffe import layers as L
from caffe import params as P

from . import config
from .fixed_weights import PREWITT_PREFIX, UP2_PREFIX

# Learning-rate / decay multipliers (weights, bias): DeepLab-v2's convention.
LEARN = [dict(lr_mult=1, decay_mult=1), dict(lr_mult=2, decay_mult=0)]
SCORE = [dict(lr_mult=10, decay_mult=1), dict(lr_mult=20, decay_mult=0)]
FROZEN = [dict(lr_mult=0, decay_mult=0), dict(lr_mult=0, decay_mult=0)]
FIXED = [dict(lr_mult=0, decay_mult=0)]  # weights only (no bias term)


def gaussian(std):
    return dict(type='gaussian', std=std)


XAVIER = dict(type='xavier')
ZERO = dict(type='constant', value=0)


def conv(n, name, bottom, nout, ks, stride=1, pad=0, dilation=1, group=1, param=LEARN, wf=None, relu=True, lrn=False):
    """Convolution `name` (+ in-place ReLU `relu_<name>`, + LRN `norm_<name>`).

    Returns the top to feed the next layer (the LRN output when `lrn`)."""
    kw = dict(num_output=nout, kernel_size=ks, param=param, weight_filler=wf or gaussian(0.01), bias_filler=ZERO)
    if stride != 1:
        kw['stride'] = stride
    if pad:
        kw['pad'] = pad
    if dilation != 1:
        kw['dilation'] = dilation
    if group != 1:
        kw['group'] = group
    n[name] = L.Convolution(bottom, **kw)
    top = n[name]
    if relu:
        n['relu_' + name] = L.ReLU(top, in_place=True)
        top = n['relu_' + name]
    if lrn:
        n['norm_' + name] = L.LRN(top, local_size=5, alpha=1e-4, beta=0.75)
        top = n['norm_' + name]
    return top


def max_pool(n, name, bottom, ks, stride, pad=0):
    kw = dict(pool=P.Pooling.MAX, kernel_size=ks, stride=stride)
    if pad:
        kw['pad'] = pad
    n[name] = L.Pooling(bottom, **kw)
    return n[name]


def dropout(n, name, bottom):
    n[name] = L.Dropout(bottom, dropout_ratio=0.5, in_place=True)
    return n[name]


def upsample2(n, name, bottom, channels):
    """Corner-aligned bilinear x2 zoom (41 -> 81): fixed Deconvolution k3 s2 p1,
    one group per channel; its weights are written into the layer's `blobs` by
    `netgen.fixed_weights.write_fixed_blobs` (the filler is then never used)."""
    assert name.startswith(UP2_PREFIX), name
    n[name] = L.Deconvolution(
        bottom,
        param=FIXED,
        convolution_param=dict(
            num_output=channels, group=channels, kernel_size=3, stride=2, pad=1, bias_term=False, weight_filler=ZERO
        ),
    )
    return n[name]


# ---------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------


def data_param_str(source, batch_size, train, label_size, depth_sizes, max_depth=None):
    """JSON param_str of `data_prep.layers.HybridData` (docs/DESIGN.md), sorted keys;
    `max_depth` (`config.MAX_DEPTH[dataset]`) only when the net reads depth."""
    return json.dumps(
        dict(
            source=source,
            batch_size=batch_size,
            crop_size=config.CROP_SIZE,
            train=bool(train),
            mirror=bool(train and config.MIRROR),
            flip=bool(train and config.FLIP),
            mean=list(config.MEAN_BGR),
            label_size=label_size,
            depth_sizes=list(depth_sizes),
            seed=config.DATA_SEED,
            **(dict(max_depth=max_depth) if depth_sizes and max_depth is not None else {}),
        ),
        sort_keys=True,
    )


def data_layer(n, kind, source, batch_size, train, label_size, depth_sizes, depth_tops, max_depth=None):
    """Adds the data layer with tops `data`, [`label`], `depth_tops`...

    kind 'python': `data_prep.layers.HybridData`; kind 'input': an Input layer with
    the same top shapes (to run a train/test net without the database)."""
    assert len(depth_sizes) == len(depth_tops)
    names = ['data'] + (['label'] if label_size else []) + list(depth_tops)
    shapes = [[batch_size, 3, config.CROP_SIZE, config.CROP_SIZE]]
    if label_size:
        shapes.append([batch_size, 1, label_size, label_size])
    shapes += [[batch_size, 1, s, s] for s in depth_sizes]
    if kind == 'python':
        tops = L.Python(
            name='hybrid_data',
            ntop=len(names),
            python_param=dict(
                module='data_prep.layers',
                layer='HybridData',
                param_str=data_param_str(source, batch_size, train, label_size, depth_sizes, max_depth),
            ),
        )
    elif kind == 'input':
        tops = L.Input(name='hybrid_data', ntop=len(names), input_param=dict(shape=[dict(dim=s) for s in shapes]))
    else:
        raise ValueError("data_layer must be 'python' or 'input', not %r" % (kind,))
    if len(names) == 1:
        tops = (tops,)
    for name, top in zip(names, tops):
        n[name] = top
    return tops


def deploy_input(n, batch_size=1):
    n.data = L.Input(input_param=dict(shape=[dict(dim=[batch_size, 3, config.INPUT_SIZE, config.INPUT_SIZE])]))
    return n.data


# ---------------------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------------------


def seg_loss(n, score, weight):
    """`loss_seg`: softmax cross-entropy (paper's LS, L310-313), 255 ignored, normalised
    as `config.SEG_LOSS_NORMALIZATION` says, loss_weight `weight` (alpha)."""
    n.loss_seg = L.SoftmaxWithLoss(
        score,
        n.label,
        loss_weight=weight,
        loss_param=dict(ignore_label=config.IGNORE_LABEL, normalization=getattr(P.Loss, config.SEG_LOSS_NORMALIZATION)),
    )


def valid_mask(n, name, gt):
    """1 where the ground-truth depth is valid (> 0), else 0."""
    n[name] = L.Threshold(gt, threshold=0)
    return n[name]


def depth_losses(n, head, pred, gt, abs_loss=True):
    """`loss_<head>_abs` (paper's LDabs: Euclidean, weighted as in DepthNet's 10 m unit)
    and `loss_<head>_mvn` (LDmvn: Euclidean after per-map mean-variance normalisation of
    both maps), paper L314-321. With `config.DEPTH_LOSS_MASK` both are over valid pixels:
    the prediction is multiplied by the validity mask (gt is 0 where invalid)."""
    masked = pred
    if config.DEPTH_LOSS_MASK:
        mask = valid_mask(n, '%s_valid' % head, gt)
        n['%s_masked' % head] = L.Eltwise(pred, mask, operation=P.Eltwise.PROD)
        masked = n['%s_masked' % head]
    if abs_loss:
        n['loss_%s_abs' % head] = L.EuclideanLoss(masked, gt, loss_weight=1.0 / config.DEPTH_LOSS_UNIT_M**2)
    n['%s_mvn' % head] = L.MVN(masked)
    n['%s_gt_mvn' % head] = L.MVN(gt)
    n['loss_%s_mvn' % head] = L.EuclideanLoss(n['%s_mvn' % head], n['%s_gt_mvn' % head], loss_weight=1)


def gradient_loss(n, head, pred, gt):
    """DepthNet's gradient loss: Euclidean between MVN(pred) and MVN(Prewitt(gt)),
    over pixels whose whole 3 x 3 Prewitt window holds valid depth."""
    n[PREWITT_PREFIX + head] = L.Convolution(
        gt, param=FIXED, convolution_param=dict(num_output=2, kernel_size=3, pad=1, bias_term=False, weight_filler=ZERO)
    )
    target = n[PREWITT_PREFIX + head]
    valid = valid_mask(n, '%s_valid' % head, gt)
    # erode: keep pixels whose 3 x 3 window is all valid and inside the map (Caffe's
    # average pooling counts the zero padding in the window size)
    n['%s_valid_frac' % head] = L.Pooling(valid, pool=P.Pooling.AVE, kernel_size=3, stride=1, pad=1)
    n['%s_valid_ero' % head] = L.Threshold(n['%s_valid_frac' % head], threshold=0.99)
    n['%s_valid2' % head] = L.Tile(n['%s_valid_ero' % head], axis=1, tiles=2)
    mask = n['%s_valid2' % head]
    n['%s_masked' % head] = L.Eltwise(pred, mask, operation=P.Eltwise.PROD)
    n['%s_gt_masked' % head] = L.Eltwise(target, mask, operation=P.Eltwise.PROD)
    n['%s_mvn' % head] = L.MVN(n['%s_masked' % head])
    n['%s_gt_mvn' % head] = L.MVN(n['%s_gt_masked' % head])
    n['loss_%s_mvn' % head] = L.EuclideanLoss(n['%s_mvn' % head], n['%s_gt_mvn' % head], loss_weight=1)


# ---------------------------------------------------------------------------------------
# DeepLab-v2: VGG16 feature net and ASPP-L (paper L269-291, docs/REFERENCE.md "DeepLab-v2")
# ---------------------------------------------------------------------------------------

VGG_GROUPS = ((1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512))


def vgg16(n, bottom, param=LEARN):
    """VGG16 with DeepLab-v2's strides: pool1-3 3x3/2 pad 1, pool4-5 3x3/1 pad 1,
    conv5 dilation 2. 321 -> 161 -> 81 -> 41 -> 41 -> 41. Returns `pool5` (512 ch)."""
    top = bottom
    for g, count, nout in VGG_GROUPS:
        for i in range(1, count + 1):
            dil = 2 if g == 5 else 1
            top = conv(n, 'conv%d_%d' % (g, i), top, nout, 3, pad=dil, dilation=dil, param=param)
        top = max_pool(n, 'pool%d' % g, top, 3, 2 if g <= 3 else 1, pad=1)
    return top


def aspp(n, bottom, num_classes, train):
    """ASPP-L: four branches fc6_i (3x3, rate r) - fc7_i (1x1) - fc8_i (1x1, K),
    summed into `fc8` (the class scores, 41 x 41)."""
    scores = []
    for i, rate in enumerate(config.ASPP_RATES, 1):  # paper L287-288
        top = conv(n, 'fc6_%d' % i, bottom, 1024, 3, pad=rate, dilation=rate)
        if train:
            top = dropout(n, 'drop6_%d' % i, top)
        top = conv(n, 'fc7_%d' % i, top, 1024, 1)
        if train:
            top = dropout(n, 'drop7_%d' % i, top)
        scores.append(conv(n, 'fc8_%d' % i, top, num_classes, 1, param=SCORE, relu=False))
    n.fc8 = L.Eltwise(*scores, operation=P.Eltwise.SUM)
    return n.fc8


# ---------------------------------------------------------------------------------------
# DepthNet (paper L241-268, docs/REFERENCE.md "DepthNet")
# ---------------------------------------------------------------------------------------


def alexnet_trunk(n, prefix, bottom, param, conv1_pad, pool5_stride):
    """AlexNet conv1-conv5, ReLU + LRN after every conv (paper L245-248; AlexNet's LRN
    after conv1-2 only with `config.LRN_EVERY_CONV` False), max pool 3x3 after conv1 and
    conv5 (L248-251). Layers `<prefix>_conv1`..`<prefix>_conv5`."""
    every = config.LRN_EVERY_CONV
    top = conv(n, prefix + '_conv1', bottom, 96, 11, stride=4, pad=conv1_pad, param=param, lrn=True)
    top = max_pool(n, prefix + '_pool1', top, 3, 2, pad=1 if conv1_pad else 0)
    top = conv(n, prefix + '_conv2', top, 256, 5, pad=2, group=2, param=param, lrn=True)
    top = conv(n, prefix + '_conv3', top, 384, 3, pad=1, param=param, lrn=every)
    top = conv(n, prefix + '_conv4', top, 384, 3, pad=1, group=2, param=param, lrn=every)
    top = conv(n, prefix + '_conv5', top, 256, 3, pad=1, group=2, param=param, lrn=every)
    return max_pool(n, prefix + '_pool5', top, 3, pool5_stride, pad=0 if pool5_stride == 2 else 1)


def global_net(n, bottom, train, frozen=False, random_std=None, expose=False):
    """Global depth net: AlexNet trunk at DepthNet's geometry (321 -> 78 -> 39 -> 19),
    fc 1024 (+ ReLU, dropout), fc 1681 reshaped to `depth_global` 1 x 41 x 41.

    Returns the map for the layers downstream. expose=True (deploy nets whose refining
    net consumes the map): that map is a second reshape, `global_map`, so that
    `depth_global` stays an output of the net (a Reshape shares memory: no copy)."""
    param = FROZEN if frozen else LEARN
    top = alexnet_trunk(n, 'global', bottom, param, conv1_pad=0, pool5_stride=2)
    wf = gaussian(random_std) if random_std else XAVIER
    n.global_fc6 = L.InnerProduct(top, num_output=1024, param=param, weight_filler=wf, bias_filler=ZERO)
    n.relu_global_fc6 = L.ReLU(n.global_fc6, in_place=True)
    top = n.relu_global_fc6
    if train and not frozen:
        top = dropout(n, 'drop_global_fc6', top)
    s = config.SCORE_SIZE
    n.global_fc7 = L.InnerProduct(top, num_output=s * s, param=param, weight_filler=wf, bias_filler=ZERO)
    shape = dict(dim=[0, 1, s, s])
    if expose:
        n.global_map = L.Reshape(n.global_fc7, shape=shape)
    n.depth_global = L.Reshape(n.global_fc7, shape=shape)
    return n.global_map if expose else n.depth_global


def gradient_net(n, bottom, frozen=False):
    """Gradient net: the global net's conv part (paper L258-259) kept on the 41 x 41
    grid (conv1 pad 5: 321 -> 81, pool1 -> 41, pool5 3x3/1), then a 3x3 conv to the
    two gradient maps (x, y): `gradient` 2 x 41 x 41."""
    param = FROZEN if frozen else LEARN
    top = alexnet_trunk(n, 'grad', bottom, param, conv1_pad=5, pool5_stride=1)
    n.gradient = L.Convolution(
        top, num_output=2, kernel_size=3, pad=1, param=param, weight_filler=XAVIER, bias_filler=ZERO
    )
    return n.gradient


def refine_net(n, image, context, context_channels, random_std=None):
    """Refining net (paper L260-268): conv1 on the image + ReLU + LRN + max pool
    (321 -> 161 -> 81, `config.REFINE_CONV1`, `REFINE_POOL1`), concatenated with the
    41 x 41 `context` maps zoomed x2 to 81; four more convs, each + ReLU: conv2-conv4
    (5x5, 64), conv5 (3x3, 1; its ReLU: `config.REFINE_FINAL_RELU`), scaled to metres:
    `depth` 1 x 81 x 81."""
    wf = gaussian(random_std) if random_std else XAVIER
    k, s, p = config.REFINE_CONV1
    top = conv(n, 'refine_conv1', image, 96, k, stride=s, pad=p, wf=wf, lrn=True)
    img = max_pool(n, 'refine_pool1', top, *config.REFINE_POOL1)
    up = upsample2(n, UP2_PREFIX + 'refine', context, context_channels)
    n.refine_concat = L.Concat(img, up, axis=1)
    top = n.refine_concat
    for i in (2, 3, 4):
        group = config.REFINE_CONV4_GROUP if i == 4 else 1  # DepthNet's conv4-refine: group 2
        top = conv(n, 'refine_conv%d' % i, top, 64, 5, pad=2, group=group, wf=wf)
    top = conv(n, 'refine_conv5', top, 1, 3, pad=1, wf=wf, relu=config.REFINE_FINAL_RELU)
    n.depth = L.Power(top, scale=config.DEPTH_OUTPUT_SCALE)
    return n.depth


def global_context(n, glob):
    """The global depth map as the refining net reads it: raw metres, or mean-variance
    normalised (`global_map_mvn`) with `config.REFINE_CONTEXT_MVN`, as DepthNet did."""
    if not config.REFINE_CONTEXT_MVN:
        return glob
    n.global_map_mvn = L.MVN(glob)
    return n.global_map_mvn


def concat41(n, name, tops):
    """Concatenate 41 x 41 context maps along channels (or pass a single one)."""
    if len(tops) == 1:
        return tops[0]
    n[name] = L.Concat(*tops, axis=1)
    return n[name]
