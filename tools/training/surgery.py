"""Weight surgery: pretrained weights copied into a live `caffe.Net` by layer name.

Initialisation of the paper (L297-304): the VGG feature net and the atrous (ASPP) upsampling
net from DeepLab's ImageNet-pretrained model, in A2 also the global depth net from DepthNet's
model; every other layer keeps its random filler (netgen writes the Gaussian into the nets).

- `init_from_deeplab`: conv1_1..conv5_3, fc6_1..fc6_4, fc7_1..fc7_4 (DeepLab-v2's init model);
  a plain VGG16 with reduced fc6/fc7 (DeepLab-LargeFOV's init) has one fc6/fc7, copied into all
  four branches. fc8 is never copied (its classes differ). Every layer must fit exactly.
- `init_from_depthnet`: layers from DepthNet's model through `netgen.DEPTHNET_LAYER_MAP` (its
  released names: `conv1`..`conv5`, `fc-main`, `fc-depth`, `conv1-grad`.., `conv1-refine`..),
  only those whose shapes fit at our 321 x 321 input (its fc layers were sized for its own
  input); each layer is logged as copied or skipped, with the reason.
- `copy_shared_layers`: every layer present in both (earlier DepthNet stages, `--weights`).

Caffe's own `Net.copy_from` aborts the process on a shape mismatch and silently skips missing
layers; these functions check first and raise `ToolError` naming the file, the layer and
both shapes, and copy nothing when a check fails. `fixed_*` layers are never copied (their
weights come from `netgen.fixed_weights`). Caffemodels are read with protobuf alone
(`tools.core.protos`), so no prototxt of the source model is needed.
"""

from netgen.blocks import VGG_GROUPS
from netgen.config import ASPP_RATES, DEPTHNET_LAYER_MAP
from netgen.fixed_weights import PREFIX as FIXED_PREFIX
from tools.core import ToolError
from tools.core.protos import copy_blobs, fit_arrays, layer_blobs, read_caffemodel

VGG_LAYERS = tuple('conv%d_%d' % (g, i) for g, count, _ in VGG_GROUPS for i in range(1, count + 1))
BRANCHES = tuple(range(1, len(ASPP_RATES) + 1))
ASPP_FC = ('fc6', 'fc7')
#: Prefix of our global depth net's layers (A2 takes only these from DepthNet's model).
GLOBAL_PREFIX = 'global_'


def load_model(path):
    """{layer name: [float32 arrays]} of the caffemodel at `path`."""
    return layer_blobs(read_caffemodel(path))


def _fitted(arrays, blobs):
    return fit_arrays(arrays, [b.data.shape for b in blobs])


def _shapes(shapes):
    return ', '.join('x'.join(map(str, s)) for s in shapes)


def _check_in_net(net, names, what):
    missing = [n for n in names if n not in net.params]
    if missing:
        raise ToolError('%s: the net has no layer %s' % (what, ', '.join(missing)))


def transplant(net, model, pairs, path):
    """Copy model[src] into net.params[dst] for every (dst, src) in `pairs`, all or nothing.
    Raises ToolError naming `path`, the layers and both shapes when a source layer is missing
    or any shape differs (`tools.core.protos.fit_arrays`' rule)."""
    _check_in_net(net, [dst for dst, _ in pairs], path)
    fitted, faults = {}, []
    for dst, src in pairs:
        if src not in model:
            faults.append('%s has no layer %s' % (path, src))
            continue
        arrays, why = _fitted(model[src], net.params[dst])
        if arrays is None:
            faults.append('%s -> %s: %s' % (src, dst, why))
        fitted[dst] = arrays
    if faults:
        raise ToolError('%s does not fit the net: %s' % (path, '; '.join(faults)))
    return copy_blobs(net, fitted, path)


def deeplab_pairs(model, path):
    """(net layer, model layer) pairs of the VGG + ASPP initialisation from `model`."""
    missing = [n for n in VGG_LAYERS if n not in model]
    if missing:
        raise ToolError('%s is not a DeepLab/VGG16 model: no layer %s' % (path, ', '.join(missing)))
    pairs = [(n, n) for n in VGG_LAYERS]
    for fc in ASPP_FC:
        branches = ['%s_%d' % (fc, b) for b in BRANCHES]
        if all(b in model for b in branches):  # DeepLab-v2's ASPP init model
            pairs += [(b, b) for b in branches]
        elif fc in model:  # a plain VGG16 with reduced fc6 / fc7
            pairs += [(b, fc) for b in branches]
        else:
            raise ToolError(
                '%s holds neither %s nor %s (a VGG16 with reduced fc layers)' % (path, ', '.join(branches), fc)
            )
    return pairs


def init_from_deeplab(net, path, log=print):
    """VGG feature net and ASPP branches of `net` from DeepLab's init model at `path`
    (paper L297-298, L301-302). Returns the layers copied."""
    model = load_model(path)
    pairs = deeplab_pairs(model, path)
    _check_in_net(net, [dst for dst, _ in pairs], 'DeepLab init %s' % path)
    copied = transplant(net, model, pairs, path)
    sources = sorted({src for _, src in pairs} - set(VGG_LAYERS))
    log(
        'DeepLab init %s: copied %d layers (%s .. %s; ASPP from %s)'
        % (path, len(copied), copied[0], copied[-1], ', '.join(sources))
    )
    return copied


def transplant_fitting(net, model, candidates, path, log=print):
    """For each (dst, [src names]) copy the first src present in `model` if its shapes fit;
    log every layer as copied or skipped with the reason. Returns (copied, skipped) lists
    of (dst, src or None, reason)."""
    copied, skipped = [], []
    for dst, names in candidates:
        src = next((s for s in names if s in model), None)
        if src is None:
            skipped.append((dst, None, 'no layer %s in the file' % ' or '.join(names)))
        else:
            arrays, why = _fitted(model[src], net.params[dst])
            if arrays is None:
                skipped.append((dst, src, why))
            else:
                for blob, array in zip(net.params[dst], arrays):
                    blob.data[...] = array
                copied.append((dst, src, _shapes(a.shape for a in arrays)))
    for dst, src, why in copied:
        log('  copied  %-16s <- %-14s %s' % (dst, src, why))
    for dst, src, why in skipped:
        log('  skipped %-16s <- %-14s %s' % (dst, src or '-', why))
    return copied, skipped


def init_from_depthnet(net, path, targets, log=print):
    """Layers `targets` of `net` from DepthNet's model at `path` (paper L302-303: A2's global
    depth net), each looked up under DepthNet's name (`DEPTHNET_LAYER_MAP`), then under ours;
    only the layers whose shapes fit are copied. Returns the layers copied."""
    if not targets:
        raise ToolError("DepthNet init %s: the net has no layer DepthNet's model initialises" % path)
    model = load_model(path)
    log('DepthNet init %s (only layers whose shapes fit):' % path)
    candidates = [(n, list(dict.fromkeys([DEPTHNET_LAYER_MAP.get(n, n), n]))) for n in targets]
    copied, skipped = transplant_fitting(net, model, candidates, path, log)
    log('DepthNet init: %d layers copied, %d skipped' % (len(copied), len(skipped)))
    if not copied:
        log("WARNING: nothing of %s fits: is it DepthNet's model?" % path)
    return [dst for dst, _, _ in copied]


def depthnet_targets(net, hybrid, frozen=()):
    """Layers of `net` that DepthNet's model may initialise: in a hybrid net (A2) only the
    global depth net (the paper initialises the rest at random, L303-304), in DepthNet's own
    stages every layer with a counterpart; `frozen` layers (loaded from earlier stages) never."""
    return [
        n
        for n in net.params
        if n in DEPTHNET_LAYER_MAP and n not in frozen and (n.startswith(GLOBAL_PREFIX) or not hybrid)
    ]


def copy_shared_layers(net, path, log=print, required=True):
    """Every learned layer of `net` that `path` also holds (same name), except `fixed_*`;
    shapes must match. Returns the layers copied; ToolError when none is shared and
    `required`."""
    model = load_model(path)
    shared = [n for n in net.params if n in model and not n.startswith(FIXED_PREFIX)]
    if not shared and required:
        raise ToolError(
            '%s shares no layer name with the net (its layers: %s)'
            % (path, ', '.join(sorted(model)) or 'none with weights')
        )
    copied = transplant(net, model, [(n, n) for n in shared], path)
    log('weights %s: copied %d layers (%s)' % (path, len(copied), ', '.join(copied)))
    return copied
