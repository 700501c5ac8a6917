"""A small SUN-RGBD in the official layout and file formats, with rendered rooms (`render_indoor`).

Writes what `data_prep.sunrgbd` reads, the way the official archives hold it: SUNRGBDMeta.mat (v7
struct array with the authors' absolute paths), SUNRGBD2Dseg.mat (v7.3, seglabel as double maps
behind object references), allsplit.mat (frame directories), and per frame an RGB JPEG, a raw
`depth` PNG with holes and the filled `depth_bfx` PNG, both uint16 with the bits rotated left by 3,
plus intrinsics.txt and scene.txt. Frames come from the four sensors with their image sizes
(docs/REFERENCE.md: "image sizes vary by sensor"). Every other room is 10.5-12 m deep, so that depths
beyond 8.192 m (the top bits of the rotation) and the 10 m cap occur in every sample.
"""

import os
from typing import NamedTuple

import numpy as np

from data_prep import matlab
from data_prep.dataset import IGNORE, Record
from data_prep.render_indoor import render_room
from data_prep.sunrgbd import CLASS_NAMES, DATA_DIR, DEPTH_DIR, MAX_DEPTH, META_FILE, SEG_FILE, SPLIT_FILE
from data_prep.synth import Camera

#: Prefix of the paths in the official metadata (the authors' file system).
AUTHORS_ROOT = '/n/fs/sun3d/data/'


class Sensor(NamedTuple):
    name: str
    camera: Camera
    directory: str  # format string of the frame directory below SUNRGBD/, {n}: frame number
    stem: str  # format string of the image/depth file name without extension


#: The four sensors of SUN-RGBD, their image sizes and intrinsics (approximate) and path patterns.
SENSORS = [
    Sensor('kv1', Camera(518.86, 519.47, 284.58, 208.74, 561, 427), 'kv1/NYUdata/NYU{n:04d}', 'NYU{n:04d}'),
    Sensor(
        'kv2',
        Camera(529.50, 529.50, 365.00, 265.00, 730, 530),
        'kv2/kinect2data/{n:06d}_2014-05-26_14-23-37_260595134347_rgbf{n:06d}-resize',
        '{n:07d}',
    ),
    Sensor(
        'realsense',
        Camera(570.34, 570.34, 310.00, 225.00, 681, 441),
        'realsense/lg/2014_10_24-14_05_55-13110000{n:02d}',
        '{n:07d}',
    ),
    Sensor(
        'xtion',
        Camera(570.34, 570.34, 320.00, 240.00, 640, 480),
        'xtion/sun3ddata/mit_32_d507/d507_2/{n:07d}-0000{n:08d}',
        '{n:07d}-0000{n:08d}',
    ),
]

#: Distance ranges (metres) of the far wall; near and far rooms alternate across frames and sensors.
NEAR_ROOM, FAR_ROOM = (3.0, 8.0), (10.5, 12.0)

#: render_indoor role -> seglabel id (1..37; clutter: 0, unlabeled).
ROLE_IDS = {name: i + 1 for i, name in enumerate(CLASS_NAMES)}
ROLE_IDS['clutter'] = 0


def encode_depth(depth):
    """Metres -> depth_bfx uint16: millimetres with the bits rotated left by 3 (inverse of decode)."""
    millimetres = np.clip(np.rint(np.asarray(depth) * 1000), 0, 65535).astype(np.uint16)
    return (millimetres << 3) | (millimetres >> 13)


def write(out_dir, count=4, seed=0, progress=False):
    """Write `count` frames per split under `out_dir`; return {split: {key: Record}}, what the
    reader must give back (the image before JPEG compression). `progress`: a bar on stderr."""
    from tqdm import tqdm  # noqa: PLC0415

    if count < 1:
        raise ValueError('count must be at least 1 (frames per split)')
    rng = np.random.default_rng(seed)
    in_train = rng.permutation(2 * count) < count
    meta, seg, splits, truth = [], [], {'train': [], 'test': []}, {'train': {}, 'test': {}}
    lut = np.array([IGNORE] + list(range(len(CLASS_NAMES))), np.uint8)
    for i in tqdm(range(2 * count), desc='sample sunrgbd', unit='img', disable=not progress):
        sensor = SENSORS[i % len(SENSORS)]
        far = (i + i // len(SENSORS)) % 2 == 1
        scene = render_room(sensor.camera, ROLE_IDS, rng, depth_range=FAR_ROOM if far else NEAR_ROOM)
        directory, image_file, depth = _write_frame(out_dir, sensor, i + 1, scene, rng)
        meta.append(_meta_entry(sensor, directory, os.path.splitext(os.path.basename(image_file))[0]))
        seg.append(
            {
                'seglabel': scene.label.astype(np.float64),
                'seglabelall': scene.label.astype(np.float64),
                'seglistall': list(CLASS_NAMES),
            }
        )
        split = 'train' if in_train[i] else 'test'
        splits[split].append(AUTHORS_ROOT + directory)
        truth[split][image_file] = Record(scene.image, lut[scene.label], depth, [os.path.join(out_dir, image_file)])
    for rel in (META_FILE, SEG_FILE, SPLIT_FILE):
        os.makedirs(os.path.join(out_dir, os.path.dirname(rel)), exist_ok=True)
    matlab.write_v5(os.path.join(out_dir, META_FILE), {'SUNRGBDMeta': matlab.StructArray(meta)})
    matlab.write_v73(os.path.join(out_dir, SEG_FILE), {'SUNRGBD2Dseg': matlab.StructArray(seg)})
    n_val = len(splits['train']) // 2
    matlab.write_v5(
        os.path.join(out_dir, SPLIT_FILE),
        {
            'alltrain': splits['train'],
            'alltest': splits['test'],
            'trainvalsplit': {'train': splits['train'][n_val:], 'val': splits['train'][:n_val]},
        },
    )
    return truth


def _write_frame(out_dir, sensor, n, scene, rng):
    """Write frame number `n`'s files; return (its directory, its image file, both relative to
    `out_dir`, and the depth in metres the reader must decode from its depth_bfx PNG)."""
    import cv2  # noqa: PLC0415
    from PIL import Image  # noqa: PLC0415

    directory = f'{DATA_DIR}/{sensor.directory.format(n=n)}'
    stem = sensor.stem.format(n=n)
    filled, raw = _depth_maps(scene, rng)
    files = {
        'image': f'{directory}/image/{stem}.jpg',
        'depth': f'{directory}/depth/{stem}.png',
        'bfx': f'{directory}/{DEPTH_DIR}/{stem}.png',
    }
    for rel in files.values():
        os.makedirs(os.path.join(out_dir, os.path.dirname(rel)), exist_ok=True)
    Image.fromarray(scene.image).save(os.path.join(out_dir, files['image']), quality=95)
    cv2.imwrite(os.path.join(out_dir, files['depth']), encode_depth(raw))
    cv2.imwrite(os.path.join(out_dir, files['bfx']), encode_depth(filled))
    _write_frame_text(os.path.join(out_dir, directory), sensor.camera, scene.kind)
    millimetres = np.rint(filled * 1000).astype(np.float32)
    return directory, files['image'], np.minimum(millimetres / np.float32(1000), np.float32(MAX_DEPTH))


def _depth_maps(scene, rng):
    """(filled depth_bfx, raw depth) in metres: the filled map has a few invalid specks, the raw one
    also misses glass and mirrors and a band at the left border, as Kinect depth does."""
    filled = scene.depth.copy()
    height, width = filled.shape
    for _ in range(rng.integers(1, 4)):
        r, c = rng.integers(0, height - 4), rng.integers(0, width - 4)
        filled[r : r + rng.integers(1, 5), c : c + rng.integers(1, 5)] = 0
    raw = filled.copy()
    raw[np.isin(scene.label, [ROLE_IDS['window'], ROLE_IDS['mirror']])] = 0
    raw[:, : rng.integers(4, 12)] = 0
    return filled, raw


def _meta_entry(sensor, directory, stem):
    """One SUNRGBDMeta element, fields in the official order."""
    cam = sensor.camera
    path = AUTHORS_ROOT + directory
    return {
        'sequenceName': directory,
        'groundtruth3DBB': np.zeros((0, 0)),
        'Rtilt': np.eye(3),
        'K': np.array([[cam.fx, 0, cam.cx], [0, cam.fy, cam.cy], [0, 0, 1]]),
        'depthpath': f'{path}/depth/{stem}.png',
        'rgbpath': f'{path}/image/{stem}.jpg',
        'anno_extrinsics': np.eye(3),
        'depthname': f'{stem}.png',
        'rgbname': f'{stem}.jpg',
        'sensorType': sensor.name,
        'valid': np.float64(1),
        'gtCorner3D': np.zeros((0, 0)),
        'groundtruth2DBB': np.zeros((0, 0)),
    }


def _write_frame_text(directory, cam, kind):
    with open(os.path.join(directory, 'intrinsics.txt'), 'w') as f:
        f.write(f'{cam.fx} 0 {cam.cx}\n0 {cam.fy} {cam.cy}\n0 0 1\n')
    with open(os.path.join(directory, 'scene.txt'), 'w') as f:
        f.write(kind)
