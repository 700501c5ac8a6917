"""Blob shapes and parameter counts of a NetParameter, without building a caffe.Net.

Covers the layer types the generators use (and no others: an unknown type raises).
The tests compare it blob by blob with the shapes Caffe computes, so the tables that
`python -m netgen` writes into docs/nets/README.md can be regenerated (and checked by
`python -m netgen --check`) in well under a second.
"""

import json
import math


def _conv_geometry(cp):
    k = cp.kernel_size[0] if len(cp.kernel_size) else 1
    s = cp.stride[0] if len(cp.stride) else 1
    p = cp.pad[0] if len(cp.pad) else 0
    d = cp.dilation[0] if len(cp.dilation) else 1
    return k, s, p, d


def _param_blobs(layer, bottoms, top):
    """Shapes of the parameter blobs of `layer` given its bottom and top shapes."""
    t = layer.type
    if t in ('Convolution', 'Deconvolution'):
        cp = layer.convolution_param
        k = _conv_geometry(cp)[0]
        cin, cout, g = bottoms[0][1], cp.num_output, cp.group
        w = [cout, cin // g, k, k] if t == 'Convolution' else [cin, cout // g, k, k]
        return [w, [cout]] if cp.bias_term else [w]
    if t == 'InnerProduct':
        ip = layer.inner_product_param
        return [[ip.num_output, math.prod(bottoms[0][1:])], [ip.num_output]]
    return []


def _top_shapes(layer, bottoms):
    t = layer.type
    if t == 'Input':
        return [list(s.dim) for s in layer.input_param.shape]
    if t == 'Python':
        p = json.loads(layer.python_param.param_str)
        b, c = p['batch_size'], p['crop_size']
        shapes = [[b, 3, c, c]]
        if p['label_size']:
            shapes.append([b, 1, p['label_size'], p['label_size']])
        return shapes + [[b, 1, s, s] for s in p['depth_sizes']]
    if t in ('ReLU', 'LRN', 'Dropout', 'MVN', 'Power', 'Threshold', 'Softmax'):
        return [list(bottoms[0])]
    if t == 'Eltwise':
        if any(list(b) != list(bottoms[0]) for b in bottoms):
            raise ValueError('%s: Eltwise of unequal shapes %s' % (layer.name, bottoms))
        return [list(bottoms[0])]
    if t in ('SoftmaxWithLoss', 'EuclideanLoss'):
        return [[]]
    if t == 'Concat':
        out = list(bottoms[0])
        out[layer.concat_param.axis] = sum(b[layer.concat_param.axis] for b in bottoms)
        return [out]
    if t == 'Tile':
        out = list(bottoms[0])
        out[layer.tile_param.axis] *= layer.tile_param.tiles
        return [out]
    if t == 'Reshape':
        dims = list(layer.reshape_param.shape.dim)
        out = [bottoms[0][i] if d == 0 else d for i, d in enumerate(dims)]
        if -1 in out:
            out[out.index(-1)] = math.prod(bottoms[0]) // -math.prod(out)
        return [out]
    if t == 'InnerProduct':
        return [[bottoms[0][0], layer.inner_product_param.num_output]]
    if t in ('Convolution', 'Deconvolution'):
        cp = layer.convolution_param
        k, s, p, d = _conv_geometry(cp)
        ek = d * (k - 1) + 1
        size = [
            ((h + 2 * p - ek) // s + 1) if t == 'Convolution' else (s * (h - 1) + ek - 2 * p) for h in bottoms[0][2:]
        ]
        return [[bottoms[0][0], cp.num_output] + size]
    if t == 'Pooling':
        pp = layer.pooling_param
        k, s, p = pp.kernel_size, pp.stride, pp.pad
        size = []
        for h in bottoms[0][2:]:
            o = int(math.ceil((h + 2 * p - k) / float(s))) + 1
            if p and (o - 1) * s >= h + p:  # Caffe: the last window must start inside
                o -= 1
            size.append(o)
        return [list(bottoms[0][:2]) + size]
    raise ValueError('shapes: layer type %r (%s) not supported' % (t, layer.name))


def infer(net_param):
    """Returns (blobs, params): blob name -> shape (list), and layer name ->
    (list of param blob shapes, list of lr_mult per blob)."""
    blobs, params = {}, {}
    for layer in net_param.layer:
        bottoms = [blobs[b] for b in layer.bottom]
        tops = _top_shapes(layer, bottoms)
        if len(tops) != len(layer.top):
            raise ValueError('%s: %d tops, %d shapes' % (layer.name, len(layer.top), len(tops)))
        for name, shape in zip(layer.top, tops):
            blobs[name] = shape
        shapes = _param_blobs(layer, bottoms, tops[0])
        if shapes:
            mults = [layer.param[i].lr_mult if i < len(layer.param) else 1.0 for i in range(len(shapes))]
            params[layer.name] = (shapes, mults)
    return blobs, params


def count_params(net_param):
    """(total, trainable): numbers of parameters, trainable = lr_mult > 0."""
    total = trainable = 0
    for shapes, mults in infer(net_param)[1].values():
        for shape, mult in zip(shapes, mults):
            total += math.prod(shape)
            trainable += math.prod(shape) if mult > 0 else 0
    return total, trainable
