"""netgen.fixed_weights: the corner-aligned bilinear x2 zoom and the Prewitt kernels, found by
the `fixed_*` naming rule, written into the prototxt's `blobs` (`write_fixed_blobs`), which
stock Caffe loads instead of the fillers, and checked in a live net (`check_fixed_weights`)."""

import caffe
import numpy as np
import pytest
from caffe import layers as L
from caffe.net_spec import NetSpec

from netgen import blocks as B
from netgen.fixed_weights import BILINEAR_K3, check_fixed_weights, write_fixed_blobs

caffe.set_mode_cpu()


def make_net(tmp_path, n, blobs=True):
    """A caffe.Net of NetSpec `n`, its fixed weights in the prototxt (`blobs`) or not."""
    proto = n.to_proto()
    if blobs:
        write_fixed_blobs(proto)
    path = tmp_path / 'net.prototxt'
    path.write_text(str(proto))
    return caffe.Net(str(path), caffe.TEST)


def corner_aligned_zoom2(x):
    """Reference: linear interpolation along each axis, corners on corners."""
    h, w = x.shape[-2:]
    ys, xs = np.linspace(0, h - 1, 2 * h - 1), np.linspace(0, w - 1, 2 * w - 1)
    rows = np.stack([np.interp(ys, np.arange(h), x[..., :, j]) for j in range(w)], -1)
    return np.stack([np.interp(xs, np.arange(w), rows[i]) for i in range(2 * h - 1)], 0)


def test_bilinear_kernel():
    assert np.array_equal(BILINEAR_K3, [[0.25, 0.5, 0.25], [0.5, 1, 0.5], [0.25, 0.5, 0.25]])


def test_up2_is_corner_aligned_bilinear(tmp_path):
    n = NetSpec()
    n.data = L.Input(input_param=dict(shape=[dict(dim=[2, 3, 41, 41])]))
    B.upsample2(n, 'fixed_up2_test', n.data, 3)
    net = make_net(tmp_path, n)
    assert check_fixed_weights(net) == ['fixed_up2_test']
    x = np.random.RandomState(0).randn(2, 3, 41, 41).astype(np.float32)
    net.blobs['data'].data[...] = x
    y = net.forward()['fixed_up2_test']
    assert y.shape == (2, 3, 81, 81)
    assert np.array_equal(y[:, :, ::2, ::2], x)  # corners on corners
    for i in range(2):
        for c in range(3):
            np.testing.assert_allclose(y[i, c], corner_aligned_zoom2(x[i, c]), atol=1e-5)


def test_prewitt(tmp_path):
    n = NetSpec()
    n.gt = L.Input(input_param=dict(shape=[dict(dim=[1, 1, 9, 11])]))
    n.pred = L.Input(input_param=dict(shape=[dict(dim=[1, 2, 9, 11])]))
    B.gradient_loss(n, 'g', n.pred, n.gt)
    net = make_net(tmp_path, n)
    assert check_fixed_weights(net) == ['fixed_prewitt_g']
    yy, xx = np.mgrid[0:9, 0:11].astype(np.float32)
    depth = 2 + 0.5 * xx + 0.25 * yy  # a plane
    depth[4, 6] = 0  # one invalid pixel
    net.blobs['gt'].data[0, 0] = depth
    net.forward()
    g = net.blobs['fixed_prewitt_g'].data[0]
    mask = net.blobs['g_valid2'].data[0]
    assert mask.shape == (2, 9, 11)
    inside = mask[0] > 0
    # valid: interior pixels whose 3 x 3 window avoids the invalid pixel
    expected = np.zeros((9, 11), bool)
    expected[1:-1, 1:-1] = True
    expected[3:6, 5:8] = False
    assert np.array_equal(inside, expected) and np.array_equal(mask[1], mask[0])
    np.testing.assert_allclose(g[0][inside], 3 * 2 * 0.5)  # x: right minus left
    np.testing.assert_allclose(g[1][inside], 3 * 2 * 0.25)  # y: bottom minus top
    assert np.all(net.blobs['g_gt_masked'].data[0][:, ~inside] == 0)


def test_unknown_or_misshaped_fixed_layers_fail(tmp_path):
    n = NetSpec()
    n.data = L.Input(input_param=dict(shape=[dict(dim=[1, 2, 5, 5])]))
    n.fixed_blur = L.Convolution(n.data, num_output=2, kernel_size=3, bias_term=False)
    with pytest.raises(ValueError, match='fixed_blur'):
        write_fixed_blobs(n.to_proto())
    with pytest.raises(ValueError, match='fixed_blur'):
        check_fixed_weights(make_net(tmp_path, n, blobs=False))

    n = NetSpec()
    n.data = L.Input(input_param=dict(shape=[dict(dim=[1, 2, 5, 5])]))
    n.fixed_up2_x = L.Deconvolution(
        n.data,
        convolution_param=dict(  # group 1: wrong
            num_output=2, kernel_size=3, stride=2, pad=1, bias_term=False
        ),
    )
    with pytest.raises(ValueError, match='group = C'):
        write_fixed_blobs(n.to_proto())


def test_a_net_without_the_blobs_fails_the_check(tmp_path):
    """A zoom left at its (zero) filler is refused, not used silently."""
    n = NetSpec()
    n.data = L.Input(input_param=dict(shape=[dict(dim=[1, 3, 41, 41])]))
    B.upsample2(n, 'fixed_up2_test', n.data, 3)
    with pytest.raises(ValueError, match='fixed_up2_test'):
        check_fixed_weights(make_net(tmp_path, n, blobs=False))


def test_fork_bilinear_filler_is_not_the_zoom(tmp_path):
    """Why the weights are written by hand: the fork's filler gives another k=3 kernel."""
    n = NetSpec()
    n.data = L.Input(input_param=dict(shape=[dict(dim=[1, 1, 5, 5])]))
    n.up = L.Deconvolution(
        n.data,
        convolution_param=dict(
            num_output=1, group=1, kernel_size=3, stride=2, pad=1, bias_term=False, weight_filler=dict(type='bilinear')
        ),
    )
    w = make_net(tmp_path, n).params['up'][0].data[0, 0]
    assert not np.allclose(w, BILINEAR_K3)
