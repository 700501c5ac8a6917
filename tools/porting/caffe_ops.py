"""Caffe's forward semantics as torch functions, exact where frameworks differ.

Each function mirrors one Caffe layer's CPU forward (src/caffe/layers/*.cpp of our build)
in plain torch ops that ONNX export keeps as they are:
- pooling: output size rounded up (ceil_mode, the default), the last window dropped when it
  would start in the right padding, AVE dividing by the window clipped to input + pad;
- LRN: Caffe's alpha is divided by local_size; WITHIN_CHANNEL uses 1, not k;
- MVN: eps is added to the standard deviation, not to the variance;
- Reshape: 0 copies a bottom axis, -1 is inferred, axis/num_axes replace a range of axes.
"""

import math

import torch
import torch.nn.functional as F


def pooled_size(size, kernel, stride, pad, ceil_mode=True):
    """Caffe's pooled output length along one axis (PoolingLayer::Reshape)."""
    span = float(size + 2 * pad - kernel) / stride
    out = (math.ceil(span) if ceil_mode else math.floor(span)) + 1
    if pad and (out - 1) * stride >= size + pad:
        out -= 1  # the last window would start in the padding: Caffe clips it
    return out


def _pad_to_windows(x, kernel, stride, pad, ceil_mode, value):
    """Pad (or crop) H and W so that plain floor-mode pooling sees Caffe's windows."""
    extents = []
    for size, k, s, p in zip(x.shape[-2:], kernel, stride, pad):
        out = pooled_size(size, k, s, p, ceil_mode)
        extents.append((p, (out - 1) * s + k - p - size, out))
    (pad_top, bottom, out_h), (pad_left, right, out_w) = extents
    x = F.pad(x, (pad_left, max(right, 0), pad_top, max(bottom, 0)), value=value)
    if bottom < 0 or right < 0:  # rows/columns no window reaches
        x = x[..., : x.shape[-2] + min(bottom, 0), : x.shape[-1] + min(right, 0)]
    return x, (out_h, out_w)


def _ave_divisor_correction(size, out, kernel, stride, pad):
    """kernel / Caffe's divisor per output position: the window clipped to input + pad."""
    factors = []
    for o in range(out):
        start = o * stride - pad
        end = min(start + kernel, size + pad)
        factors.append(kernel / (end - start))
    return factors


def pool2d(x, method, kernel, stride, pad, ceil_mode=True):
    """Caffe's Pooling (MAX or AVE) on N x C x H x W; kernel/stride/pad are (h, w) pairs."""
    if method == 'MAX':
        padded, _ = _pad_to_windows(x, kernel, stride, pad, ceil_mode, float('-inf'))
        return F.max_pool2d(padded, kernel, stride)
    if method != 'AVE':
        raise ValueError(f'pooling method {method} is not supported (MAX and AVE are)')
    padded, (out_h, out_w) = _pad_to_windows(x, kernel, stride, pad, ceil_mode, 0.0)
    y = F.avg_pool2d(padded, kernel, stride)
    rows = _ave_divisor_correction(x.shape[-2], out_h, kernel[0], stride[0], pad[0])
    cols = _ave_divisor_correction(x.shape[-1], out_w, kernel[1], stride[1], pad[1])
    if any(f != 1 for f in rows + cols):
        y = y * (
            torch.tensor(rows, dtype=x.dtype, device=x.device)[:, None]
            * torch.tensor(cols, dtype=x.dtype, device=x.device)[None, :]
        )
    return y


def lrn_across_channels(x, size, alpha, beta, k):
    """Caffe's LRN ACROSS_CHANNELS: x * (k + alpha / size * sum of x^2 over size channels)^-beta."""
    pre = (size - 1) // 2
    padded = F.pad(x * x, (0, 0, 0, 0, pre, size - 1 - pre))
    channels = x.shape[1]
    window_sum = padded[:, 0:channels]
    for offset in range(1, size):
        window_sum = window_sum + padded[:, offset : offset + channels]
    return x * torch.pow(k + (alpha / size) * window_sum, -beta)


def lrn_within_channel(x, size, alpha, beta):
    """Caffe's LRN WITHIN_CHANNEL: x * (1 + alpha * AVE-pool of x^2, size x size)^-beta."""
    pre = (size - 1) // 2
    mean_square = pool2d(x * x, 'AVE', (size, size), (1, 1), (pre, pre))
    return x * torch.pow(1 + alpha * mean_square, -beta)


def mvn(x, normalize_variance=True, across_channels=False, eps=1e-9):
    """Caffe's MVN per sample (and per channel unless across_channels): (x - mean) / (std + eps)."""
    dims = tuple(range(1 if across_channels else 2, x.dim()))
    centred = x - x.mean(dim=dims, keepdim=True)
    if not normalize_variance:
        return centred
    std = torch.sqrt((centred * centred).mean(dim=dims, keepdim=True))
    return centred / (std + eps)


def power(x, power_, scale, shift):
    """Caffe's Power: (shift + scale * x) ^ power, constant when scale * power is 0."""
    if scale * power_ == 0:
        return torch.full_like(x, 1.0 if power_ == 0 else shift**power_)
    y = x
    if scale != 1:
        y = y * scale
    if shift != 0:
        y = y + shift
    if power_ != 1:
        y = torch.pow(y, power_)
    return y


def canonical_axis(axis, num_axes):
    """Caffe's Blob::CanonicalAxisIndex: negative axes count from the end."""
    if not -num_axes <= axis < num_axes:
        raise ValueError(f'axis {axis} out of range for a {num_axes}-axis blob')
    return axis % num_axes


def reshape_template(rank, dims, axis=0, num_axes=-1):
    """Caffe's Reshape as a template for any batch size: each entry of the top shape is a
    bottom axis index to copy at run time (`('copy', i)`: the axes outside [axis, axis +
    num_axes) and the `0` dims), a fixed size, or -1 (inferred, as torch's reshape does).
    Copying the bottom's axes at run time keeps the batch symbolic in exported graphs."""
    start = rank + 1 + axis if axis < 0 else axis
    if not 0 <= start <= rank:
        raise ValueError(f'reshape axis {axis} out of range for a {rank}-axis blob')
    end = rank if num_axes == -1 else start + num_axes
    if end > rank:
        raise ValueError(f'reshape axis {axis} + num_axes {num_axes} exceed a {rank}-axis blob')
    if list(dims).count(-1) > 1:
        raise ValueError('reshape: at most one dimension may be -1')
    middle = [('copy', start + i) if d == 0 else d for i, d in enumerate(dims)]
    return [('copy', i) for i in range(start)] + middle + [('copy', i) for i in range(end, rank)]


def apply_template(template, bottom_shape):
    """The top shape of a `reshape_template` for a bottom shape (ints or symbolic sizes)."""
    return [bottom_shape[e[1]] if isinstance(e, tuple) else e for e in template]


def reshape_shape(bottom_shape, dims, axis=0, num_axes=-1):
    """Caffe's Reshape top shape: dims replace bottom axes [axis, axis + num_axes)."""
    try:
        shape = apply_template(reshape_template(len(bottom_shape), dims, axis, num_axes), bottom_shape)
    except ValueError as err:
        raise ValueError(f'{err} (shape {tuple(bottom_shape)})') from None
    if -1 in shape:
        known = math.prod(d for d in shape if d != -1)
        shape[shape.index(-1)] = math.prod(bottom_shape) // known
    if math.prod(shape) != math.prod(bottom_shape):
        raise ValueError(f'reshape of {tuple(bottom_shape)} to {tuple(shape)} changes the count')
    return shape


def broadcast_shape(rank, axis, param_shape):
    """View shape that lines a Scale/Bias blob up with bottom axes starting at axis."""
    return [1] * axis + list(param_shape) + [1] * (rank - axis - len(param_shape))
