"""Tiled inference geometry and merging (paper L349-357).

A test image larger than the 321 x 321 input is covered by the minimum number of
tiles per axis, spread evenly so that the overlaps are as small and as equal as
possible, the first tile at 0 and the last flush with the border. In overlaps the
segmentation label comes from the tile whose normalised (softmax) score is higher,
and depth is the mean over the covering tiles.

An image side shorter than a tile is padded (bottom / right, mean colour) to the
tile, not tiled; the merged maps are cropped back to the image.

Score maps (41 x 41) and depth maps (81 x 81) reach tile size by corner-aligned
bilinear upsampling (DeepLab's Interp convention: output pixel i samples input
position i * (n_in - 1) / (n_out - 1)); docs/FIDELITY.md, "Evaluation".
"""

import functools
import math

import numpy as np

from netgen.config import INPUT_SIZE


def axis_origins(length, tile=INPUT_SIZE):
    """Tile starts along one axis of `length` pixels: ceil(length / tile) tiles
    (one when length <= tile), evenly spread from 0 to length - tile."""
    if length <= 0 or tile <= 0:
        raise ValueError('axis_origins: length %d and tile %d must be positive' % (length, tile))
    count = max(1, math.ceil(length / tile))
    if count == 1:
        return [0]
    span = length - tile
    # Integer rounding of i * span / (count - 1), half up: exact and platform independent.
    return [(2 * i * span + (count - 1)) // (2 * (count - 1)) for i in range(count)]


def tile_origins(height, width, tile=INPUT_SIZE):
    """(y, x) origins of the tiles covering a height x width image, row-major.

    1024 x 2048 with tile 321 gives 4 x 7 = 28 tiles (paper L350-352)."""
    return [(y, x) for y in axis_origins(height, tile) for x in axis_origins(width, tile)]


def pad_to_tile(image, tile=INPUT_SIZE, fill=0):
    """Pad an H x W (x C) array at the bottom / right so both sides are >= tile."""
    height, width = image.shape[:2]
    pad_y, pad_x = max(0, tile - height), max(0, tile - width)
    if not pad_y and not pad_x:
        return image
    padded = np.empty((height + pad_y, width + pad_x) + image.shape[2:], image.dtype)
    padded[...] = np.asarray(fill, image.dtype)
    padded[:height, :width] = image
    return padded


@functools.lru_cache(maxsize=32)
def interpolation_matrix(size_in, size_out):
    """(size_out, size_in) weights of corner-aligned linear interpolation:
    output i samples input position i * (size_in - 1) / (size_out - 1)."""
    if size_in == 1 or size_out == 1:
        matrix = np.zeros((size_out, size_in), np.float32)
        matrix[:, 0] = 1
        return matrix
    position = np.arange(size_out) * ((size_in - 1) / (size_out - 1))
    left = np.minimum(np.floor(position).astype(int), size_in - 2)
    frac = (position - left).astype(np.float32)
    matrix = np.zeros((size_out, size_in), np.float32)
    rows = np.arange(size_out)
    matrix[rows, left] = 1 - frac
    matrix[rows, left + 1] += frac
    matrix.setflags(write=False)
    return matrix


def upsample(maps, height, width):
    """Corner-aligned bilinear resize of C x h x w maps to C x height x width."""
    maps = np.asarray(maps, np.float32)
    channels, size_y, size_x = maps.shape
    rows = interpolation_matrix(size_y, height)
    cols_t = interpolation_matrix(size_x, width).T.copy()  # contiguous: BLAS's fast path
    return rows @ (maps.reshape(channels * size_y, size_x) @ cols_t).reshape(channels, size_y, width)


class TileMerger:
    """Assembles per-tile predictions into full-image maps (paper L353-357).

    Segmentation: a tile's label map and confidence are the argmax and max of its
    upsampled softmax scores; a pixel takes the label of the covering tile with the
    highest confidence (the first such tile on a tie). Depth: mean over covering tiles.
    """

    def __init__(self, height, width, tile=INPUT_SIZE):
        self.height, self.width, self.tile = height, width, tile
        padded = (max(height, tile), max(width, tile))
        self._label = np.zeros(padded, np.int32)
        self._confidence = np.full(padded, -np.inf, np.float32)
        self._depth_sum = np.zeros(padded, np.float64)
        self._depth_count = np.zeros(padded, np.int32)
        self.has_segmentation = self.has_depth = False

    def _window(self, y, x):
        return np.s_[y : y + self.tile, x : x + self.tile]

    def add_segmentation(self, y, x, scores):
        """Merge a tile's K x h x w softmax scores whose tile starts at (y, x)."""
        probabilities = upsample(scores, self.tile, self.tile)
        window = self._window(y, x)
        label = probabilities.argmax(axis=0)
        confidence = np.take_along_axis(probabilities, label[None], axis=0)[0]
        better = confidence > self._confidence[window]
        self._label[window][better] = label[better]
        self._confidence[window][better] = confidence[better]
        self.has_segmentation = True

    def add_depth(self, y, x, depth):
        """Merge a tile's h x w (or 1 x h x w) depth map whose tile starts at (y, x)."""
        depth = np.asarray(depth).reshape((1,) + np.shape(depth)[-2:])
        window = self._window(y, x)
        self._depth_sum[window] += upsample(depth, self.tile, self.tile)[0]
        self._depth_count[window] += 1
        self.has_depth = True

    def label(self):
        """H x W int32 label map (class indices)."""
        if not self.has_segmentation:
            raise RuntimeError('TileMerger.label: no segmentation tile was added')
        return self._label[: self.height, : self.width].copy()

    def depth(self):
        """H x W float32 depth map, the mean over covering tiles."""
        if not self.has_depth:
            raise RuntimeError('TileMerger.depth: no depth tile was added')
        count = self._depth_count[: self.height, : self.width]
        if count.min() == 0:
            raise RuntimeError('TileMerger.depth: some pixels are covered by no tile')
        return (self._depth_sum[: self.height, : self.width] / count).astype(np.float32)
