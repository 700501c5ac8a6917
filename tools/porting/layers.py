"""One Caffe layer -> one torch module, with Caffe's semantics (see `tools.porting.caffe_ops`).

`LAYER_BUILDERS[type](layer, bottom shapes)` gives the module; its forward takes the bottoms
and returns the top (or a tuple of tops). Learned blobs are parameters in Caffe's blob shapes,
named by `caffe_blobs` in Caffe's blob order. Anything not translated exactly raises
`UnsupportedLayerError` naming the layer and its type.
"""

import torch
import torch.nn.functional as F
from caffe.proto import caffe_pb2
from torch import nn

from tools.core import ToolError
from tools.porting import caffe_ops


class UnsupportedLayerError(ToolError):
    """A layer type or parameter this converter does not translate."""


def unsupported(layer, why):
    return UnsupportedLayerError(f"layer '{layer.name}' (type {layer.type}): {why}")


# --- modules -----------------------------------------------------------------------------


class Op(nn.Module):
    """A parameterless layer: fn(*bottoms, **kwargs), the tops as a tensor or a tuple."""

    def __init__(self, fn, **kwargs):
        super().__init__()
        self.fn, self.kwargs = fn, kwargs

    def forward(self, *bottoms):
        return self.fn(*bottoms, **self.kwargs)

    def extra_repr(self):
        args = ', '.join(f'{k}={v}' for k, v in self.kwargs.items())
        return f'{self.fn.__name__}({args})'


class Convolution(nn.Module):
    """Convolution or Deconvolution; weight as Caffe stores it (out or in channels first)."""

    def __init__(self, weight_shape, bias_size, stride, pad, dilation, group, transposed):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(weight_shape))
        self.bias = nn.Parameter(torch.empty(bias_size)) if bias_size else None
        self.caffe_blobs = ('weight', 'bias') if bias_size else ('weight',)
        self.stride, self.pad, self.dilation, self.group = stride, pad, dilation, group
        self.transposed = transposed

    def forward(self, x):
        conv = F.conv_transpose2d if self.transposed else F.conv2d
        return conv(
            x, self.weight, self.bias, stride=self.stride, padding=self.pad, dilation=self.dilation, groups=self.group
        )

    def extra_repr(self):
        kind = 'Deconvolution' if self.transposed else 'Convolution'
        return (
            f'{kind} weight={tuple(self.weight.shape)} stride={self.stride} pad={self.pad} '
            f'dilation={self.dilation} group={self.group}'
        )


class InnerProduct(nn.Module):
    """Caffe's InnerProduct: bottom flattened from `axis`; weight N x K (K x N if transpose)."""

    def __init__(self, weight_shape, bias_size, axis, transpose):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(weight_shape))
        self.bias = nn.Parameter(torch.empty(bias_size)) if bias_size else None
        self.caffe_blobs = ('weight', 'bias') if bias_size else ('weight',)
        self.axis, self.transpose = axis, transpose

    def forward(self, x):
        weight = self.weight.t() if self.transpose else self.weight
        return F.linear(x.flatten(self.axis), weight, self.bias)


class Scale(nn.Module):
    """Caffe's Scale: bottom * scale (+ bias), the scale learned or given as a second bottom."""

    def __init__(self, axis, scale_shape, learned_scale, bias_term):
        super().__init__()
        self.axis, self.scale_shape = axis, tuple(scale_shape)
        self.weight = nn.Parameter(torch.empty(scale_shape)) if learned_scale else None
        self.bias = nn.Parameter(torch.empty(scale_shape)) if bias_term else None
        self.caffe_blobs = tuple(n for n, p in (('weight', self.weight), ('bias', self.bias)) if p is not None)

    def forward(self, x, scale=None):
        view = caffe_ops.broadcast_shape(x.dim(), self.axis, self.scale_shape)
        y = x * (self.weight if scale is None else scale).reshape(view)
        return y if self.bias is None else y + self.bias.reshape(view)


# --- parameter parsing ---------------------------------------------------------------------


def _pair(layer, param, repeated, h_name, w_name, default):
    """Caffe's (h, w) from `name_h`/`name_w` or a repeated field of 0, 1 or 2 values."""
    if h_name and (param.HasField(h_name) or param.HasField(w_name)):
        return (getattr(param, h_name), getattr(param, w_name))
    values = list(getattr(param, repeated)) if repeated else []
    if len(values) > 2:
        raise unsupported(layer, f'{len(values)}-D {repeated}; only 2-D is supported')
    if not values:
        return (default, default)
    return (values[0], values[-1])


def _pool_pair(param, name, prefix, default):
    """PoolingParameter's (h, w): `prefix_h`/`prefix_w` or the single `name`."""
    if param.HasField(prefix + '_h') or param.HasField(prefix + '_w'):
        return (getattr(param, prefix + '_h'), getattr(param, prefix + '_w'))
    return (getattr(param, name),) * 2 if param.HasField(name) else (default, default)


def _ceil_mode(param):
    """Pooling rounding in either dialect: the fork's `ceil_mode`, BVLC's `round_mode`."""
    fields = param.DESCRIPTOR.fields_by_name
    if 'ceil_mode' in fields:
        return param.ceil_mode
    if 'round_mode' in fields:
        return param.round_mode == param.CEIL
    return True


def _require_4d(layer, shapes):
    for shape in shapes:
        if len(shape) != 4:
            raise unsupported(layer, f'bottom of shape {tuple(shape)}; only N x C x H x W is supported')


# --- layer builders: (layer, bottom shapes) -> module -------------------------------------


def _convolution(layer, shapes):
    _require_4d(layer, shapes)
    p = layer.convolution_param
    if p.axis != 1:
        raise unsupported(layer, f'axis {p.axis}; only 1 is supported')
    kernel = _pair(layer, p, 'kernel_size', 'kernel_h', 'kernel_w', None)
    stride = _pair(layer, p, 'stride', 'stride_h', 'stride_w', 1)
    pad = _pair(layer, p, 'pad', 'pad_h', 'pad_w', 0)
    dilation = _pair(layer, p, 'dilation', None, None, 1)
    if None in kernel:
        raise unsupported(layer, 'no kernel size')
    channels, group, outputs = shapes[0][1], p.group, p.num_output
    if channels % group or outputs % group:
        raise unsupported(layer, f'group {group} does not divide {channels} inputs and {outputs} outputs')
    transposed = layer.type == 'Deconvolution'
    weight = (channels, outputs // group) if transposed else (outputs, channels // group)
    return Convolution(weight + kernel, outputs if p.bias_term else 0, stride, pad, dilation, group, transposed)


def _inner_product(layer, shapes):
    p = layer.inner_product_param
    axis = caffe_ops.canonical_axis(p.axis, len(shapes[0]))
    inputs = int(torch.Size(shapes[0][axis:]).numel())
    weight = (inputs, p.num_output) if p.transpose else (p.num_output, inputs)
    return InnerProduct(weight, p.num_output if p.bias_term else 0, axis, p.transpose)


def _scale(layer, shapes):
    p = layer.scale_param
    axis = caffe_ops.canonical_axis(p.axis, len(shapes[0]))
    if len(shapes) > 1:
        scale_shape = shapes[1]
    else:
        end = len(shapes[0]) if p.num_axes == -1 else axis + p.num_axes
        scale_shape = shapes[0][axis:end]
    return Scale(axis, scale_shape, len(shapes) == 1, p.bias_term)


def _pooling(layer, shapes):
    _require_4d(layer, shapes)
    p = layer.pooling_param
    method = caffe_pb2.PoolingParameter.PoolMethod.Name(p.pool)
    if method not in ('MAX', 'AVE'):
        raise unsupported(layer, f'pool {method}; MAX and AVE are supported')
    kernel = _pool_pair(p, 'kernel_size', 'kernel', None)
    if None in kernel and not p.global_pooling:
        raise unsupported(layer, 'no kernel size')
    return Op(
        _pool,
        method=method,
        kernel=kernel,
        stride=_pool_pair(p, 'stride', 'stride', 1),
        pad=_pool_pair(p, 'pad', 'pad', 0),
        ceil_mode=_ceil_mode(p),
        global_pooling=p.global_pooling,
    )


def _pool(x, method, kernel, stride, pad, ceil_mode, global_pooling):
    if global_pooling:
        kernel = tuple(x.shape[-2:])
    return caffe_ops.pool2d(x, method, kernel, stride, pad, ceil_mode)


def _lrn(layer, shapes):
    _require_4d(layer, shapes)
    p = layer.lrn_param
    if p.local_size % 2 == 0:
        raise unsupported(layer, f'even local_size {p.local_size} (Caffe requires odd)')
    if p.norm_region == p.WITHIN_CHANNEL:
        return Op(caffe_ops.lrn_within_channel, size=p.local_size, alpha=p.alpha, beta=p.beta)
    return Op(caffe_ops.lrn_across_channels, size=p.local_size, alpha=p.alpha, beta=p.beta, k=p.k)


def _relu(layer, shapes):
    slope = layer.relu_param.negative_slope
    return Op(F.leaky_relu, negative_slope=slope) if slope else Op(F.relu)


def _concat(layer, shapes):
    p = layer.concat_param
    axis = p.concat_dim if p.HasField('concat_dim') and not p.HasField('axis') else p.axis
    return Op(_cat, dim=caffe_ops.canonical_axis(axis, len(shapes[0])))


def _cat(*xs, dim):
    return torch.cat(xs, dim=dim)


def _eltwise(layer, shapes):
    p = layer.eltwise_param
    operation = caffe_pb2.EltwiseParameter.EltwiseOp.Name(p.operation)
    coeffs = tuple(p.coeff) or (1.0,) * len(shapes)
    if len(coeffs) != len(shapes):
        raise unsupported(layer, f'{len(coeffs)} coeffs for {len(shapes)} bottoms')
    if operation != 'SUM' and len(p.coeff):
        raise unsupported(layer, 'coeff is only meaningful for SUM')
    return Op(_eltwise_op, operation=operation, coeffs=coeffs)


def _eltwise_op(*xs, operation, coeffs):
    if operation == 'SUM':
        terms = [x if c == 1 else x * c for x, c in zip(xs, coeffs)]
        out = terms[0]
        for term in terms[1:]:
            out = out + term
        return out
    combine = torch.mul if operation == 'PROD' else torch.maximum
    out = xs[0]
    for x in xs[1:]:
        out = combine(out, x)
    return out


def _softmax(layer, shapes):
    return Op(torch.softmax, dim=caffe_ops.canonical_axis(layer.softmax_param.axis, len(shapes[0])))


def _mvn(layer, shapes):
    p = layer.mvn_param
    return Op(caffe_ops.mvn, normalize_variance=p.normalize_variance, across_channels=p.across_channels, eps=p.eps)


def _power(layer, shapes):
    p = layer.power_param
    return Op(caffe_ops.power, power_=p.power, scale=p.scale, shift=p.shift)


def _reshape(layer, shapes):
    p = layer.reshape_param
    dims = tuple(p.shape.dim)
    try:
        caffe_ops.reshape_shape(shapes[0], dims, p.axis, p.num_axes)  # Caffe's checks, at build time
    except ValueError as err:
        raise unsupported(layer, str(err)) from None
    template = caffe_ops.reshape_template(len(shapes[0]), dims, p.axis, p.num_axes)
    return Op(_reshape_op, template=tuple(template))


def _reshape_op(x, template):
    """Copied axes read from x at run time, so the batch stays symbolic when exported."""
    return x.reshape(caffe_ops.apply_template(template, x.shape))


def _flatten(layer, shapes):
    p, rank = layer.flatten_param, len(shapes[0])
    return Op(
        torch.flatten,
        start_dim=caffe_ops.canonical_axis(p.axis, rank),
        end_dim=caffe_ops.canonical_axis(p.end_axis, rank),
    )


def _crop(layer, shapes):
    if len(shapes) != 2:
        raise unsupported(layer, 'Crop needs two bottoms')
    p, rank = layer.crop_param, len(shapes[0])
    start = caffe_ops.canonical_axis(p.axis, rank)
    offsets = list(p.offset)
    if len(offsets) not in (0, 1, rank - start):
        raise unsupported(layer, f'{len(offsets)} offsets for {rank - start} cropped axes')
    offsets = [0] * start + (offsets * (rank - start) if len(offsets) == 1 else offsets or [0] * (rank - start))
    return Op(_crop_op, start=start, offsets=tuple(offsets))


def _crop_op(x, like, start, offsets):
    index = tuple(slice(offsets[i], offsets[i] + like.shape[i]) if i >= start else slice(None) for i in range(x.dim()))
    return x[index]


def _split(layer, shapes):
    return Op(_split_op, copies=len(layer.top))


def _split_op(x, copies):
    return (x,) * copies


def _slice(layer, shapes):
    p = layer.slice_param
    axis = p.slice_dim if p.HasField('slice_dim') and not p.HasField('axis') else p.axis
    axis = caffe_ops.canonical_axis(axis, len(shapes[0]))
    size, points = shapes[0][axis], list(p.slice_point)
    if points:
        if len(points) != len(layer.top) - 1:
            raise unsupported(layer, f'{len(points)} slice points for {len(layer.top)} tops')
        bounds = [0] + points + [size]
    else:
        if size % len(layer.top):
            raise unsupported(layer, f'{size} not divisible into {len(layer.top)} tops')
        step = size // len(layer.top)
        bounds = list(range(0, size + 1, step))
    return Op(_slice_op, dim=axis, sizes=tuple(b - a for a, b in zip(bounds, bounds[1:])))


def _slice_op(x, dim, sizes):
    return tuple(torch.split(x, list(sizes), dim=dim))


def _threshold(layer, shapes):
    return Op(_threshold_op, threshold=layer.threshold_param.threshold)


def _threshold_op(x, threshold):
    return (x > threshold).to(x.dtype)


def _identity_op(x):
    return x


LAYER_BUILDERS = {
    'Convolution': _convolution,
    'Deconvolution': _convolution,
    'InnerProduct': _inner_product,
    'Scale': _scale,
    'Pooling': _pooling,
    'LRN': _lrn,
    'ReLU': _relu,
    'Concat': _concat,
    'Eltwise': _eltwise,
    'Softmax': _softmax,
    'MVN': _mvn,
    'Power': _power,
    'Reshape': _reshape,
    'Flatten': _flatten,
    'Crop': _crop,
    'Split': _split,
    'Slice': _slice,
    'Threshold': _threshold,
    'Dropout': lambda layer, shapes: Op(_identity_op),  # identity at TEST in Caffe
    'Sigmoid': lambda layer, shapes: Op(torch.sigmoid),
    'TanH': lambda layer, shapes: Op(torch.tanh),
}
