"""A small NYUv2 in the official layout and file formats, with rendered rooms (`render_indoor`).

Writes what `data_prep.nyuv2` reads, the way the distribution holds it: nyu_depth_v2_labeled.mat
(v7.3: images, depths, rawDepths, labels in MATLAB's 480 x 640 [x 3] x N layout, names, scenes,
sceneTypes, accelData), splits.mat (1-based trainNdxs / testNdxs columns) and classMapping40.mat
(mapClass, className, allClassName), all 640 x 480 with NYU's Kinect intrinsics.

The 894-name table is the sample's own (docs/FIDELITY.md): ids 1..28 carry the names of the
real table's first entries; the other furniture the renderer draws gets ids of its own, and the
remaining ids are placeholders mapped to pseudo-random classes, so a reader that skips the
mapping fails.
"""

import os

import numpy as np

from data_prep import matlab
from data_prep.dataset import IGNORE, Record
from data_prep.nyuv2 import CLASS_NAMES, LABELED_FILE, MAPPING_FILE, NUM_RAW_CLASSES, SPLITS_FILE
from data_prep.render_indoor import render_room
from data_prep.synth import Camera

#: NYU's Kinect (640 x 480; Silberman et al.'s toolbox camera parameters, rounded).
CAMERA = Camera(518.86, 519.47, 325.58, 253.74, 640, 480)

#: Raw ids 1..28 and their names (the first entries of the real 894-name table).
FIRST_NAMES = [
    'book',
    'bottle',
    'cabinet',
    'ceiling',
    'chair',
    'cone',
    'counter',
    'dishwasher',
    'faucet',
    'fire extinguisher',
    'floor',
    'garbage bin',
    'microwave',
    'paper towel dispenser',
    'paper',
    'pot',
    'refridgerator',
    'stove burner',
    'table',
    'unknown',
    'wall',
    'bowl',
    'magnet',
    'sink',
    'air vent',
    'box',
    'door knob',
    'door',
]
#: Further raw ids the sample gives the furniture it draws (the sample's choice).
MORE_NAMES = {
    36: 'desk',
    43: 'whiteboard',
    59: 'window',
    64: 'picture',
    83: 'sofa',
    85: 'bookshelf',
    89: 'curtain',
    119: 'pillow',
    122: 'mirror',
    144: 'lamp',
    157: 'bed',
    158: 'night stand',
    169: 'dresser',
    172: 'television',
    80: 'blinds',
}
#: Raw name -> NYU-40 class name for the named ids.
NAME_CLASSES = {
    'book': 'books',
    'cabinet': 'cabinet',
    'ceiling': 'ceiling',
    'chair': 'chair',
    'counter': 'counter',
    'dishwasher': 'otherfurniture',
    'floor': 'floor',
    'garbage bin': 'otherfurniture',
    'paper': 'paper',
    'refridgerator': 'refridgerator',
    'table': 'table',
    'wall': 'wall',
    'sink': 'sink',
    'air vent': 'otherstructure',
    'box': 'box',
    'door': 'door',
    'desk': 'desk',
    'whiteboard': 'whiteboard',
    'window': 'window',
    'picture': 'picture',
    'sofa': 'sofa',
    'bookshelf': 'bookshelf',
    'curtain': 'curtain',
    'pillow': 'pillow',
    'mirror': 'mirror',
    'lamp': 'lamp',
    'bed': 'bed',
    'night stand': 'night stand',
    'dresser': 'dresser',
    'television': 'television',
    'blinds': 'blinds',
}
#: render_indoor role -> raw name.
ROLE_NAMES = {
    'wall': 'wall',
    'floor': 'floor',
    'ceiling': 'ceiling',
    'cabinet': 'cabinet',
    'chair': 'chair',
    'table': 'table',
    'counter': 'counter',
    'fridge': 'refridgerator',
    'box': 'box',
    'door': 'door',
    'books': 'book',
    'bottle': 'bottle',
    'desk': 'desk',
    'whiteboard': 'whiteboard',
    'window': 'window',
    'picture': 'picture',
    'sofa': 'sofa',
    'bookshelf': 'bookshelf',
    'curtain': 'curtain',
    'pillow': 'pillow',
    'mirror': 'mirror',
    'lamp': 'lamp',
    'bed': 'bed',
    'night_stand': 'night stand',
    'dresser': 'dresser',
    'tv': 'television',
    'blinds': 'blinds',
}


def raw_names():
    """The sample's 894 raw class names (index = id - 1)."""
    names = [f'object {i}' for i in range(1, NUM_RAW_CLASSES + 1)]
    names[: len(FIRST_NAMES)] = FIRST_NAMES
    for i, name in MORE_NAMES.items():
        names[i - 1] = name
    return names


def map_class(names):
    """mapClass (1..40 per raw id): named ids by NAME_CLASSES, others otherprop or pseudo-random."""
    mapping = np.random.default_rng(NUM_RAW_CLASSES).integers(1, len(CLASS_NAMES) + 1, len(names))
    for i, name in enumerate(names):
        if name in NAME_CLASSES:
            mapping[i] = CLASS_NAMES.index(NAME_CLASSES[name]) + 1
        elif i < len(FIRST_NAMES):
            mapping[i] = CLASS_NAMES.index('otherprop') + 1
    return mapping.astype(np.float64)


def write(out_dir, count=4, seed=0, progress=False):
    """Write `count` images per split under `out_dir`; return {split: {key: Record}}, what the
    reader must give back. `progress`: a bar on stderr."""
    from tqdm import tqdm  # noqa: PLC0415

    if count < 1:
        raise ValueError('count must be at least 1 (images per split)')
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = raw_names()
    ids = {role: names.index(name) + 1 for role, name in ROLE_NAMES.items()}
    ids['clutter'] = 0
    mapping = map_class(names)
    matlab.write_v5(
        os.path.join(out_dir, MAPPING_FILE),
        {'className': list(CLASS_NAMES), 'mapClass': mapping, 'allClassName': names},
    )
    lut = np.concatenate([[IGNORE], mapping - 1]).astype(np.uint8)  # raw id -> training label

    scenes = [
        render_room(CAMERA, ids, rng, depth_range=(3.0, 9.0))
        for _ in tqdm(range(2 * count), desc='sample nyuv2', unit='img', disable=not progress)
    ]
    raw_depths = [_raw_depth(scene, ids, rng) for scene in scenes]
    kinds = [scene.kind for scene in scenes]
    matlab.write_v73(
        os.path.join(out_dir, LABELED_FILE),
        {
            'accelData': rng.normal(0, 0.05, (len(scenes), 4)).astype(np.float32),
            'depths': np.stack([s.depth for s in scenes], axis=-1).astype(np.float32),
            'images': np.stack([s.image for s in scenes], axis=-1),
            'labels': np.stack([s.label for s in scenes], axis=-1).astype(np.uint16),
            'names': names,
            'rawDepths': np.stack(raw_depths, axis=-1).astype(np.float32),
            'sceneTypes': kinds,
            'scenes': [f'{kind}_{i + 1:04d}' for i, kind in enumerate(kinds)],
        },
    )

    order = rng.permutation(len(scenes)) + 1
    split_indices = {'train': np.sort(order[:count]), 'test': np.sort(order[count:])}
    matlab.write_v5(
        os.path.join(out_dir, SPLITS_FILE),
        {
            'trainNdxs': split_indices['train'].astype(np.float64).reshape(-1, 1),
            'testNdxs': split_indices['test'].astype(np.float64).reshape(-1, 1),
        },
    )

    sources = [os.path.join(out_dir, LABELED_FILE), os.path.join(out_dir, MAPPING_FILE)]
    return {
        split: {
            f'{i:04d}': Record(
                scenes[i - 1].image, lut[scenes[i - 1].label], scenes[i - 1].depth.astype(np.float32), sources
            )
            for i in indices.tolist()
        }
        for split, indices in split_indices.items()
    }


def _raw_depth(scene, ids, rng):
    """The Kinect's raw depth: the filled map without glass, mirrors and a left border band (0)."""
    raw = scene.depth.copy()
    raw[np.isin(scene.label, [ids['window'], ids['mirror']])] = 0
    raw[:, : rng.integers(8, 16)] = 0
    return raw
