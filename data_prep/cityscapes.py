"""Cityscapes in its official layout (paper sec. 5.1, L337-349): RGB, 19 classes, stereo depth.

Reads, for a record key ``leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png``:

- that 8-bit RGB PNG (2048 x 1024);
- ``gtFine/<split>/<city>/<stem>_gtFine_labelIds.png`` (8-bit), mapped to the 19 trainIds by the
  official table of the `cityscapesscripts` package; ids with trainId 255 / -1 become 255;
- ``disparity/<split>/<city>/<stem>_disparity.png`` (16-bit) and ``camera/.../<stem>_camera.json``:
  depth = baseline * fx / ((p - 1) / 256) metres for p > 1; p = 0 (no match) and p = 1 (zero
  disparity, infinitely far) are invalid (0).

Splits: train 2975 and val 500 are labelled. The paper evaluates on val + test (2025 images,
L346-347) but the test labels are not public: ``test`` converts for depth only (no label).
"""

import math
import os

import numpy as np
from cityscapesscripts.helpers.labels import labels as _OFFICIAL_LABELS

from data_prep.dataset import IGNORE, Record, check_depth, check_same_size, map_labels, read_json, read_png
from data_prep.errors import DataError

NAME = 'cityscapes'
SPLITS = {'train': 2975, 'val': 500, 'test': 1525}
LABELLED_SPLITS = ('train', 'val')

#: labelId -> trainId (0..18, 255 = ignore) and which labelIds exist, from `cityscapesscripts`.
LABEL_TO_TRAIN = np.full(256, IGNORE, np.uint8)
KNOWN_LABEL_IDS = np.zeros(256, bool)
for _label in _OFFICIAL_LABELS:
    if _label.id >= 0:
        KNOWN_LABEL_IDS[_label.id] = True
        LABEL_TO_TRAIN[_label.id] = _label.trainId if 0 <= _label.trainId < IGNORE else IGNORE
_TRAIN_LABELS = sorted((l for l in _OFFICIAL_LABELS if 0 <= l.trainId < IGNORE), key=lambda l: l.trainId)
#: The 19 class names in trainId order (index = training label).
CLASS_NAMES = [l.name for l in _TRAIN_LABELS]
#: trainId (0..18) -> official labelId, as the official scorer reads predictions.
TRAIN_ID_TO_LABEL_ID = np.array([l.id for l in _TRAIN_LABELS], np.uint8)
NAME_TO_LABEL_ID = {l.name: l.id for l in _OFFICIAL_LABELS}
LABEL_COLOURS = {l.id: l.color for l in _OFFICIAL_LABELS}

_IMAGE_SUFFIX = '_leftImg8bit.png'
_LABEL_SUFFIX = '_gtFine_labelIds.png'


def record_paths(root, split, key):
    """The four files of record `key`: image, label, disparity, camera."""
    parts = key.split('/')
    if len(parts) != 4 or parts[0] != 'leftImg8bit' or parts[1] != split or not parts[3].endswith(_IMAGE_SUFFIX):
        raise DataError(os.path.join(root, key), f'not a Cityscapes {split} image key')
    city, stem = parts[2], parts[3][: -len(_IMAGE_SUFFIX)]
    return {
        'image': os.path.join(root, key),
        'label': os.path.join(root, 'gtFine', split, city, stem + _LABEL_SUFFIX),
        'disparity': os.path.join(root, 'disparity', split, city, f'{stem}_disparity.png'),
        'camera': os.path.join(root, 'camera', split, city, f'{stem}_camera.json'),
    }


def list_records(root, split):
    """Keys ``leftImg8bit/<split>/<city>/<file>`` of every left image of `split`, sorted.

    In labelled splits a gtFine label without its left image is listed too (its key names the
    missing image), so that the converter reports it instead of silently dropping it.
    """
    if split not in SPLITS:
        raise ValueError(f'Cityscapes has no split {split!r}')
    folder = os.path.join(root, 'leftImg8bit', split)
    if not os.path.isdir(folder):
        raise DataError(folder, 'missing directory: not a Cityscapes root (expected leftImg8bit/<split>/<city>/)')
    keys = {f'leftImg8bit/{split}/{city}/{stem}{_IMAGE_SUFFIX}' for city, stem in _stems(folder, _IMAGE_SUFFIX)}
    if split in LABELLED_SPLITS:
        keys |= {
            f'leftImg8bit/{split}/{city}/{stem}{_IMAGE_SUFFIX}'
            for city, stem in _stems(os.path.join(root, 'gtFine', split), _LABEL_SUFFIX)
        }
    if not keys:
        raise DataError(folder, f'no *{_IMAGE_SUFFIX} files in its city folders')
    return sorted(keys)


def _stems(folder, suffix):
    """(city, file stem) of the files named *suffix in the city folders of `folder`."""
    if not os.path.isdir(folder):
        return []
    return [
        (city, name[: -len(suffix)])
        for city in sorted(os.listdir(folder))
        if os.path.isdir(os.path.join(folder, city))
        for name in sorted(os.listdir(os.path.join(folder, city)))
        if name.endswith(suffix)
    ]


def camera_baseline_fx(path):
    """(extrinsic.baseline metres, intrinsic.fx pixels) from a Cityscapes camera JSON."""
    camera = read_json(path)
    try:
        baseline, fx = camera['extrinsic']['baseline'], camera['intrinsic']['fx']
    except (KeyError, TypeError):
        raise DataError(path, 'wrong structure: needs extrinsic.baseline and intrinsic.fx') from None
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (baseline, fx)):
        raise DataError(path, f'baseline {baseline!r} and fx {fx!r} must be numbers')
    # physically impossible values would give a record without valid (or with negative) depth
    for name, value, unit in (('extrinsic.baseline', baseline, 'metres'), ('intrinsic.fx', fx, 'pixels')):
        if not math.isfinite(value):
            shown = 'NaN' if math.isnan(value) else value
            raise DataError(path, f'{name} is {shown}: not a finite number of {unit} (NaN or infinite depth)')
        if value <= 0:
            effect = 'no valid depth pixel' if value == 0 else 'negative depth'
            raise DataError(path, f'{name} is {value:g} {unit}: must be positive (it would give {effect})')
    return float(baseline), float(fx)


def disparity_to_depth(disparity, baseline, fx):
    """Depth in metres from a 16-bit Cityscapes disparity map: baseline * fx / ((p - 1) / 256)."""
    valid = disparity > 1
    pixels = (disparity.astype(np.float64) - 1.0) / 256.0
    depth = np.zeros(disparity.shape, np.float64)
    depth[valid] = baseline * fx / pixels[valid]
    return depth.astype(np.float32)


def load_record(root, split, key):
    paths = record_paths(root, split, key)
    image = read_png(paths['image'], 'RGB', 8)
    disparity = read_png(paths['disparity'], 'grayscale', 16)
    check_same_size(paths['disparity'], disparity.shape, paths['image'], image.shape)
    depth = check_depth(paths['camera'], disparity_to_depth(disparity, *camera_baseline_fx(paths['camera'])))
    label, sources = None, [paths['image'], paths['disparity'], paths['camera']]
    if split in LABELLED_SPLITS:
        raw = read_png(paths['label'], 'grayscale', 8)
        check_same_size(paths['label'], raw.shape, paths['image'], image.shape)
        label = map_labels(paths['label'], raw, LABEL_TO_TRAIN, KNOWN_LABEL_IDS)
        sources.insert(1, paths['label'])
    return Record(image, label, depth, sources)
