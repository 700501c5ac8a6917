"""Weights fixed by construction, written into a live `caffe.Net`.

Naming rule (the generators follow it, `fill_fixed_weights` relies on it): every layer
whose name starts with `fixed_` has only non-learned weights (lr_mult 0, no bias) and
must be one of

- `fixed_up2_*`: Deconvolution, kernel 3, stride 2, pad 1, group = channels: the
  corner-aligned bilinear x2 zoom (41 -> 81). Each channel's kernel is the outer product
  of [.5, 1, .5] with itself, so out[2i] = in[i], out[2i+1] = (in[i] + in[i+1]) / 2.
  (The fork's "bilinear" filler gives [.1875 .5625 .5625] for k = 3: never use it.)
- `fixed_prewitt_*`: Convolution 1 -> 2 channels, kernel 3, pad 1: Prewitt x (channel 0,
  right minus left) and Prewitt y (channel 1, bottom minus top), unnormalised as in
  DepthNet.

Any other `fixed_` layer is an error, so a new fixed layer cannot be left at its filler.
"""

import numpy as np

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


def fill_fixed_weights(net):
    """Write the fixed weights of every `fixed_*` layer of `net` (a `caffe.Net`).

    Returns the names of the layers filled. Call it on every net right after it is
    created (or after `copy_from`, which would otherwise carry whatever was saved)."""
    filled = []
    for name, layer in zip(net._layer_names, net.layers):
        if not name.startswith(PREFIX):
            continue
        blobs = layer.blobs
        _check(len(blobs) == 1, name, 'expected one weight blob and no bias, got %d blobs' % len(blobs))
        w = blobs[0].data
        if name.startswith(UP2_PREFIX):
            _check(layer.type == 'Deconvolution', name, 'must be a Deconvolution')
            _check(
                w.ndim == 4 and w.shape[1:] == (1, 3, 3),
                name,
                'weights must be C x 1 x 3 x 3 (group = C), got %s' % (w.shape,),
            )
            w[...] = BILINEAR_K3
        elif name.startswith(PREWITT_PREFIX):
            _check(layer.type == 'Convolution', name, 'must be a Convolution')
            _check(w.shape == (2, 1, 3, 3), name, 'weights must be 2 x 1 x 3 x 3, got %s' % (w.shape,))
            w[0, 0] = PREWITT_X
            w[1, 0] = PREWITT_Y
        else:
            raise ValueError(
                'layer %r starts with %r but matches no known fixed kind '
                '(%s*, %s*)' % (name, PREFIX, UP2_PREFIX, PREWITT_PREFIX)
            )
        filled.append(name)
    return filled
