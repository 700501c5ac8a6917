"""Weights fixed by construction, written into the generated prototxt.

Each fixed layer carries its weights in the LayerParameter's `blobs` field
(`write_fixed_blobs`, called by `netgen.build`), and stock Caffe loads a layer with preset
blobs instead of running its filler: any Caffe builds the correct zoom and Prewitt kernels
from the prototxt alone (`caffe train -solver ...` included), with no driver step.
`check_fixed_weights(net)` verifies a live `caffe.Net` (e.g. after `copy_from` of a model
saved with other values).

Naming rule (the generators follow it, both functions rely on it): every layer
whose name starts with `fixed_` has only non-learned weights (lr_mult 0, no bias) and
must be one of

- `fixed_up2_*`: Deconvolution, kernel 3, stride 2, pad 1, group = channels: the
  corner-aligned bilinear x2 zoom (41 -> 81). Each channel's kernel is the outer product
  of [.5, 1, .5] with itself, so out[2i] = in[i], out[2i+1] = (in[i] + in[i+1]) / 2.
  (The fork's "bilinear" filler gives [.1875 .5625 .5625] for k = 3: never use it.)
- `fixed_prewitt_*`: Convolution 1 -> 2 channels, kernel 3, pad 1: Prewitt x (right
  minus left) and Prewitt y (bottom minus top), unnormalised as in DepthNet, in the order
  of `config.GRADIENT_ORDER` (default x in channel 0).

Any other `fixed_` layer is an error, so a new fixed layer cannot be left at its filler.
"""

import numpy as np

from . import config

BILINEAR_1D = np.array([0.5, 1.0, 0.5], dtype=np.float32)
BILINEAR_K3 = np.outer(BILINEAR_1D, BILINEAR_1D)
PREWITT_X = np.array([[-1, 0, 1]] * 3, dtype=np.float32)
PREWITT_Y = PREWITT_X.T.copy()

PREFIX = 'fixed_'
UP2_PREFIX = 'fixed_up2_'
PREWITT_PREFIX = 'fixed_prewitt_'


def _check(cond, name, what):
    if not cond:
        raise ValueError('fixed layer %r: %s' % (name, what))


def _kind(name, layer_type):
    """'up2' or 'prewitt' for a `fixed_*` layer; ValueError for an unknown kind."""
    if name.startswith(UP2_PREFIX):
        _check(layer_type == 'Deconvolution', name, 'must be a Deconvolution')
        return 'up2'
    if name.startswith(PREWITT_PREFIX):
        _check(layer_type == 'Convolution', name, 'must be a Convolution')
        return 'prewitt'
    raise ValueError(
        'layer %r starts with %r but matches no known fixed kind (%s*, %s*)'
        % (name, PREFIX, UP2_PREFIX, PREWITT_PREFIX)
    )


def prewitt_kernels(order=None):
    """2 x 1 x 3 x 3 Prewitt kernels in `order` (default `config.GRADIENT_ORDER`)."""
    kernels = {'x': PREWITT_X, 'y': PREWITT_Y}
    order = tuple(order or config.GRADIENT_ORDER)
    _check(sorted(order) == ['x', 'y'], 'GRADIENT_ORDER', "must be ('x', 'y') or ('y', 'x'), got %r" % (order,))
    return np.stack([kernels[axis][None] for axis in order])


def fixed_array(name, layer_type, shape):
    """The weights of fixed layer `name` for its weight blob `shape`."""
    if _kind(name, layer_type) == 'up2':
        _check(
            len(shape) == 4 and tuple(shape[1:]) == (1, 3, 3),
            name,
            'weights must be C x 1 x 3 x 3 (group = C), got %s' % (tuple(shape),),
        )
        return np.broadcast_to(BILINEAR_K3, tuple(shape)).astype(np.float32)
    _check(tuple(shape) == (2, 1, 3, 3), name, 'weights must be 2 x 1 x 3 x 3, got %s' % (tuple(shape),))
    return prewitt_kernels()


def write_fixed_blobs(proto):
    """Write the weights of every `fixed_*` layer of NetParameter `proto` into its `blobs`
    (replacing any). Returns the names of the layers written."""
    written = []
    for layer in proto.layer:
        if not layer.name.startswith(PREFIX):
            continue
        cp = layer.convolution_param
        _check(not cp.bias_term, layer.name, 'must have no bias term')
        _check(len(cp.kernel_size) == 1 and cp.kernel_size[0] == 3, layer.name, 'must have kernel 3')
        # Deconvolution: C_in x C_out / group (C_in = C_out = group); Convolution: C_out x C_in (1)
        groups = max(cp.group, 1) if _kind(layer.name, layer.type) == 'up2' else cp.num_output
        shape = (cp.num_output, cp.num_output // groups, 3, 3)
        del layer.blobs[:]
        blob = layer.blobs.add()
        blob.shape.dim.extend(shape)
        blob.data.extend(fixed_array(layer.name, layer.type, shape).ravel().tolist())
        written.append(layer.name)
    return written


def check_fixed_weights(net):
    """Check that every `fixed_*` layer of `net` (a `caffe.Net`) holds its fixed weights
    (the prototxt's blobs; Prewitt in either channel order). Returns the names checked;
    ValueError naming the layer otherwise (a zero zoom would silently drop the context)."""
    checked = []
    for name, layer in zip(net._layer_names, net.layers):
        if not name.startswith(PREFIX):
            continue
        blobs = layer.blobs
        _check(len(blobs) == 1, name, 'expected one weight blob and no bias, got %d blobs' % len(blobs))
        w = blobs[0].data
        expected = fixed_array(name, layer.type, w.shape)
        if _kind(name, layer.type) == 'prewitt' and not np.array_equal(w, expected):
            expected = expected[::-1]
        _check(
            np.array_equal(w, expected),
            name,
            'weights differ from the fixed ones the prototxt holds (a model saved with other values?)',
        )
        checked.append(name)
    return checked
