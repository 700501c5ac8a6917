"""A stand-in for a pretrained classifier when there is none: the ASPP class scores fitted by
ridge regression on the net's own features (`python -m tools.train --init-classifier N`).

Used by `make demo` only. The paper starts the feature net and ASPP from DeepLab's ImageNet
model (L297-302), which this project cannot download; from random weights, a few dozen SGD or
Adam steps do not find a classifier on the random features (post-ReLU features share a large
mean, which makes the linear problem ill-conditioned), although one exists: ridge regression
on standardised `fc7_i` features separates the sample's classes well. So the fc8_i weights
are set to that fit (one-hot targets, labelled positions of N training batches, features
of the TEST phase: no dropout), split over the four branches whose scores ASPP sums; the
other layers keep their init and everything then trains as usual.
"""

import numpy as np

from netgen.config import ASPP_RATES, IGNORE_LABEL

BRANCHES = tuple(range(1, len(ASPP_RATES) + 1))
FEATURES, SCORES, LABEL = 'fc7_%d', 'fc8_%d', 'label'
RIDGE = 1000.0


def collect(net, batches):
    """(features, labels) of the labelled positions of `batches` forward passes of `net`:
    features N x (branches x channels), the fc7_i blobs side by side."""
    xs, ys = [], []
    for _ in range(batches):
        net.forward()
        feats = np.concatenate([net.blobs[FEATURES % b].data for b in BRANCHES], axis=1)
        labels = net.blobs[LABEL].data[:, 0]
        if labels.shape[1:] != feats.shape[2:]:
            raise ValueError('label %s and features %s differ in size' % (labels.shape, feats.shape))
        feats = feats.transpose(0, 2, 3, 1).reshape(-1, feats.shape[1])
        labels = labels.reshape(-1)
        keep = labels != IGNORE_LABEL
        xs.append(feats[keep])
        ys.append(labels[keep].astype(np.int64))
    return np.concatenate(xs), np.concatenate(ys)


def ridge_classifier(x, y, num_classes, ridge=RIDGE):
    """(W: K x D, b: K) with scores x @ W.T + b fitted to one-hot targets by ridge regression
    on standardised features (the standardisation folded back into W and b)."""
    mean, std = x.mean(0), x.std(0) + 1e-6
    z = (x - mean) / std
    targets = np.eye(num_classes)[y]
    gram = z.T @ z + ridge * np.eye(z.shape[1])
    w = np.linalg.solve(gram, z.T @ (targets - targets.mean(0))).T / std
    b = targets.mean(0) - w @ mean
    return w, b


def init_classifier(train_net, feature_net, batches, log=print):
    """Fit fc8_i of `train_net` on `batches` batches of `feature_net` (a TEST-phase net
    sharing train_net's weights and reading the training data). Returns the pixel accuracy
    of the fit on the batches it saw."""
    num_classes = train_net.params[SCORES % BRANCHES[0]][0].data.shape[0]
    x, y = collect(feature_net, batches)
    if not len(y):
        raise ValueError('no labelled position in %d batches' % batches)
    w, b = ridge_classifier(x.astype(np.float64), y, num_classes)
    width = w.shape[1] // len(BRANCHES)
    for i, branch in enumerate(BRANCHES):
        weight, bias = train_net.params[SCORES % branch]
        weight.data[...] = w[:, i * width : (i + 1) * width].reshape(weight.data.shape)
        bias.data[...] = b / len(BRANCHES)
    accuracy = float(np.mean(np.argmax(x @ w.T + b, 1) == y))
    log(
        'classifier init: fc8_1..%d fitted by ridge regression on %d labelled positions of %d '
        'batches (pixel accuracy %.1f %% on them)' % (BRANCHES[-1], len(y), batches, 100 * accuracy)
    )
    return accuracy
