"""tools.tiling: tile geometry (paper L349-357), corner-aligned upsampling, merging."""

import math

import numpy as np
import pytest
import torch

from tools.evaluation.tiling import TileMerger, axis_origins, pad_to_tile, tile_origins, upsample


def test_cityscapes_image_is_covered_by_4_by_7_tiles():
    origins = tile_origins(1024, 2048)
    assert len(origins) == 28
    assert sorted({y for y, _ in origins}) == [0, 234, 469, 703]
    assert sorted({x for _, x in origins}) == [0, 288, 576, 864, 1151, 1439, 1727]
    assert origins[:2] == [(0, 0), (0, 288)]  # row-major


SIZES = [1, 2, 100, 320, 321, 322, 400, 641, 642, 643, 963, 964, 1024, 1999, 2048, 3000]


@pytest.mark.parametrize('length', SIZES)
@pytest.mark.parametrize('tile', [321, 7])
def test_axis_origins_properties(length, tile):
    origins = axis_origins(length, tile)
    count = max(1, math.ceil(length / tile))
    assert len(origins) == count
    if count > 1:
        assert (count - 1) * tile < length  # one tile fewer could not cover: minimum count
    assert origins[0] == 0
    assert origins[-1] == max(0, length - tile)  # last flush with the border
    covered = np.zeros(max(length, tile), bool)
    for start in origins:
        covered[start : start + tile] = True
    assert covered[:length].all()
    steps = np.diff(origins)
    assert (steps > 0).all() and (steps <= tile).all()
    assert steps.size == 0 or steps.max() - steps.min() <= 1  # evenly spread: overlaps differ by <= 1 px


def test_sizes_not_larger_than_a_tile_give_one_tile_at_the_origin():
    assert tile_origins(321, 321) == [(0, 0)]
    assert tile_origins(200, 300) == [(0, 0)]
    assert tile_origins(200, 700) == [(0, 0), (0, 190), (0, 379)]


def test_axis_origins_rejects_empty_sizes():
    with pytest.raises(ValueError, match='positive'):
        axis_origins(0, 321)


def test_pad_to_tile_pads_bottom_right_with_the_fill():
    image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    padded = pad_to_tile(image, tile=4, fill=(7, 8, 9))
    assert padded.shape == (4, 4, 3)
    np.testing.assert_array_equal(padded[:2, :3], image)
    assert (padded[2:] == (7, 8, 9)).all() and (padded[:, 3] == (7, 8, 9)).all()
    big = np.zeros((5, 6), np.float32)
    assert pad_to_tile(big, tile=4) is big


def test_upsample_is_corner_aligned_bilinear():
    rng = np.random.default_rng(0)
    scores = rng.random((3, 41, 41), dtype=np.float32)
    up = upsample(scores, 321, 321)
    np.testing.assert_array_equal(up[:, ::8, ::8], scores)  # 41 -> 321: pixel i at 8 i
    np.testing.assert_allclose(up[:, 4, 0], (scores[:, 0, 0] + scores[:, 1, 0]) / 2, rtol=1e-6)
    reference = torch.nn.functional.interpolate(
        torch.from_numpy(scores)[None], size=(100, 77), mode='bilinear', align_corners=True
    )[0].numpy()
    np.testing.assert_allclose(upsample(scores, 100, 77), reference, atol=1e-5)
    depth = rng.random((1, 81, 81), dtype=np.float32)
    np.testing.assert_array_equal(upsample(depth, 321, 321)[:, ::4, ::4], depth)  # 81 -> 321: x4


def test_upsampled_softmax_scores_still_sum_to_one():
    logits = np.random.default_rng(1).normal(size=(5, 41, 41))
    scores = np.exp(logits) / np.exp(logits).sum(0)
    np.testing.assert_allclose(upsample(scores, 321, 321).sum(0), 1, atol=1e-5)


def constant_scores(num_classes, label, confidence, size=3):
    scores = np.full((num_classes, size, size), (1 - confidence) / (num_classes - 1), np.float32)
    scores[label] = confidence
    return scores


def test_merge_takes_the_label_of_the_more_confident_tile_and_averages_depth():
    # width 15 with tile 9: origins 0 and 6, overlap columns 6..8
    assert axis_origins(15, 9) == [0, 6]
    merger = TileMerger(9, 15, tile=9)
    merger.add_segmentation(0, 0, constant_scores(3, label=0, confidence=0.6))
    merger.add_segmentation(0, 6, constant_scores(3, label=2, confidence=0.9))
    merger.add_depth(0, 0, np.full((1, 5, 5), 2.0))
    merger.add_depth(0, 6, np.full((5, 5), 4.0))
    label, depth = merger.label(), merger.depth()
    assert (label[:, :6] == 0).all() and (label[:, 6:] == 2).all()
    assert (depth[:, :6] == 2).all() and (depth[:, 6:9] == 3).all() and (depth[:, 9:] == 4).all()
    assert label.shape == depth.shape == (9, 15)


def test_merge_decides_per_pixel_from_upsampled_scores():
    # tile 1 is confident on its left half only, tile 2 uniformly: the overlap splits
    merger = TileMerger(5, 7, tile=5)  # origins 0 and 2, overlap columns 2..4
    left = np.zeros((2, 3, 3), np.float32)
    left[0] = [[1.0, 0.8, 0.55]] * 3  # at 5 px: columns 0..4 get 1, .9, .8, .675, .55
    left[1] = 1 - left[0]
    right = constant_scores(2, label=1, confidence=0.7)
    merger.add_segmentation(0, 0, left)
    merger.add_segmentation(0, 2, right)
    np.testing.assert_array_equal(merger.label()[0], [0, 0, 0, 1, 1, 1, 1])


def test_merge_ties_keep_the_first_tile():
    merger = TileMerger(5, 7, tile=5)  # 3 -> 5 px samples at halves: exact binary fractions
    merger.add_segmentation(0, 0, constant_scores(2, label=0, confidence=0.75))
    merger.add_segmentation(0, 2, constant_scores(2, label=1, confidence=0.75))
    np.testing.assert_array_equal(merger.label()[0], [0, 0, 0, 0, 0, 1, 1])


def test_merge_of_an_image_smaller_than_a_tile_is_cropped_back():
    merger = TileMerger(3, 4, tile=9)
    merger.add_depth(0, 0, np.arange(9, dtype=np.float32).reshape(3, 3))
    depth = merger.depth()
    assert depth.shape == (3, 4)
    np.testing.assert_allclose(depth[0], [0, 0.25, 0.5, 0.75])  # corner aligned 3 -> 9 px


def test_merge_without_tiles_fails_clearly():
    merger = TileMerger(4, 4, tile=4)
    with pytest.raises(RuntimeError, match='no segmentation tile'):
        merger.label()
    with pytest.raises(RuntimeError, match='no depth tile'):
        merger.depth()
