"""Demo only: the refining net's last conv fitted in closed form (`python -m tools.train
--probe-depth N`), the depth counterpart of `classifier_init`.

The paper trains 100K iterations from DeepLab's and DepthNet's models (L297-309); `make demo`
trains a dozen Adam steps from random weights, after which the depth output is still a nearly
constant map. A linear read-out of the depth from the trained `refine_conv4` features exists
nevertheless: this module finds it by ridge regression and writes it into `refine_conv5` (3 x 3,
64 -> 1), the layer that makes `depth` (= DEPTH_OUTPUT_SCALE x its output). The fit sees the
training images as the demo's evaluation sees the val images (`tools.evaluate --mode resize`):
each of the first N training records whole, resized to the input (OpenCV area), through a
TEST-phase twin of the train net (no dropout); targets are its ground truth at the 81 x 81
output's corner-aligned positions, valid and within the data layer's `max_depth`; features the
3 x 3 x 64 window the conv sees. (Fitted on the training crops instead, at native scale, the
read-out did not carry over to the resized val images: val RMSE 18.5 m vs the constant
predictor's 16.0 m.) Pixels are weighted by 1 / depth, so that the fit balances absolute (RMSE)
and relative (ARD) error instead of serving the far pixels only. Nothing else changes; the
paper's recipe never does this.
"""

import json

import cv2
import numpy as np

from data_prep.database import open_database
from netgen.config import DEPTH_OUTPUT_SCALE

FEATURES, LAYER = 'refine_conv4', 'refine_conv5'
RIDGE = 100.0


def windows(features):
    """N x C x H x W -> (N H W) x (C 3 3): each position's 3 x 3 window (zero padded), ordered
    as a 3 x 3 Convolution's weights (channel, row, column)."""
    n, c, h, w = features.shape
    padded = np.pad(features, ((0, 0), (0, 0), (1, 1), (1, 1)))
    shifted = [padded[:, :, dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)]
    stacked = np.stack(shifted, axis=2)  # N x C x 9 x H x W
    return stacked.transpose(0, 3, 4, 1, 2).reshape(n * h * w, c * 9)


def data_params(net_param):
    """The HybridData param_str of a train NetParameter (its first layer) as a dict."""
    return json.loads(net_param.layer[0].python_param.param_str)


def resized_target(depth, size, max_depth):
    """`depth` (H x W) at the size x size corner-aligned positions; 0 where invalid or too deep."""
    rows = np.rint(np.linspace(0, depth.shape[0] - 1, size)).astype(int)
    cols = np.rint(np.linspace(0, depth.shape[1] - 1, size)).astype(int)
    target = depth[np.ix_(rows, cols)].astype(np.float64)
    target[~np.isfinite(target)] = 0
    if max_depth is not None:
        target[target > max_depth] = 0
    return target


def collect(net, params, images):
    """(features, depth) at the valid ground-truth pixels of the first `images` records of the
    training database (`params`: the data layer's), each resized whole to the net's input."""
    database = open_database(params['source'])
    mean, side = np.asarray(params['mean'], np.float32), net.blobs['data'].data.shape[-1]
    start = 1  # the layer after the data layer, whose `data` top is set here
    xs, ys = [], []
    for index in range(min(images, len(database))):
        record = database[index]
        image = cv2.resize(record.image, (side, side), interpolation=cv2.INTER_AREA)
        net.blobs['data'].data[...] = (image[:, :, ::-1].astype(np.float32) - mean).transpose(2, 0, 1)
        net._forward(start, len(net.layers) - 1)
        features = net.blobs[FEATURES].data[:1].astype(np.float64)
        y = resized_target(record.depth, features.shape[-1], params.get('max_depth')).reshape(-1)
        keep = y > 0
        xs.append(windows(features)[keep])
        ys.append(y[keep])
    return np.concatenate(xs), np.concatenate(ys)


def ridge_fit(x, y, weights, ridge=RIDGE):
    """(w, b) minimising sum weights (x w + b - y)^2 + ridge |w_standardised|^2."""
    sw = weights / weights.sum()
    mean = sw @ x
    std = np.sqrt(sw @ (x - mean) ** 2) + 1e-6
    z = (x - mean) / std
    y_mean = sw @ y
    gram = (z * sw[:, None]).T @ z * len(y) + ridge * np.eye(z.shape[1])
    w = np.linalg.solve(gram, (z * sw[:, None]).T @ (y - y_mean) * len(y)) / std
    return w, y_mean - w @ mean


def fit_last_depth_layer(train_net, feature_net, params, images, log=print):
    """Set `refine_conv5` of `train_net` to the ridge fit on `images` training images through
    `feature_net` (a TEST-phase twin sharing its weights; `params`: its data layer's). Returns
    the fit's RMSE and ARD on those pixels, and the constant predictor's (their mean depth)."""
    x, y = collect(feature_net, params, images)
    if not len(y):
        raise ValueError('no valid depth pixel in %d training images' % images)
    w, b = ridge_fit(x, y, 1.0 / y)
    weight, bias = train_net.params[LAYER]
    weight.data[...] = (w / DEPTH_OUTPUT_SCALE).reshape(weight.data.shape)
    bias.data[...] = b / DEPTH_OUTPUT_SCALE
    pred = np.maximum(x @ w + b, 1e-3)
    fit = dict(rmse=float(np.sqrt(np.mean((pred - y) ** 2))), ard=float(np.mean(np.abs(pred - y) / y)))
    mean = y.mean()
    constant = dict(rmse=float(np.sqrt(np.mean((mean - y) ** 2))), ard=float(np.mean(np.abs(mean - y) / y)))
    log(
        'depth fit (demo only): %s fitted by ridge regression on %d valid pixels of %d training images '
        'resized to the input: RMSE %.2f m, ARD %.3f on them (their mean depth %.1f m: RMSE %.2f m, ARD %.3f)'
        % (LAYER, len(y), images, fit['rmse'], fit['ard'], mean, constant['rmse'], constant['ard'])
    )
    return dict(images=images, pixels=int(len(y)), fit=fit, constant=constant)
