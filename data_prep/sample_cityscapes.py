"""A sample Cityscapes: procedural street scenes written in the official layout and formats.

Each image is a street seen from a car's stereo camera (Cityscapes' intrinsics and baseline):
road and sidewalks on a ground plane whose depth grows toward the horizon, building facades,
trees, poles with signs and lights, cars, trucks, buses, people and bicycles as boxes, sky, and
the ego vehicle's bonnet at the bottom. One render gives colour, labelId and depth, so they agree;
depth is stored as 16-bit disparity p = 256 * baseline * fx / depth + 1 (0 where there is no
surface, as in sky, the bonnet and random stereo dropouts).

Files per record (as distributed): leftImg8bit (8-bit RGB PNG), gtFine labelIds (8-bit PNG; train
and val only, as only those labels are public), disparity (16-bit PNG), camera JSON.
"""

import json
import os

import cv2
import numpy as np

from data_prep.cityscapes import LABEL_COLOURS, NAME_TO_LABEL_ID
from data_prep.errors import DataError
from data_prep.synth import Camera, Canvas

#: Cities of the official splits (sample records take the first two of each).
CITIES = {'train': ('aachen', 'bochum'), 'val': ('frankfurt', 'lindau'), 'test': ('berlin', 'bielefeld')}
#: Camera of Cityscapes' aachen sequence (intrinsics in pixels at 2048 x 1024, baseline metres).
CAMERA_JSON = {
    'extrinsic': {'baseline': 0.209313, 'pitch': 0.038, 'roll': 0.0, 'x': 1.7, 'y': 0.026, 'yaw': -0.0195, 'z': 1.22},
    'intrinsic': {'fx': 2262.52, 'fy': 2265.3017905988554, 'u0': 1096.98, 'v0': 513.137},
}
FULL_SIZE = (2048, 1024)
FAR = 250.0  # metres of street drawn
DROPOUT = 0.01  # fraction of pixels without a stereo match


def write(out_dir, count=4, seed=0, progress=False, *, splits=('train', 'val', 'test'), size=FULL_SIZE):
    """Write `count` records per split under `out_dir`; returns {split: [record keys, sorted]}
    (``leftImg8bit/<split>/<city>/<file>``, the left image's path relative to `out_dir`).

    `progress`: a progress bar on stderr. For tests and benchmarks: `splits`, a subset to write
    (a record's scene depends on its split's position in `splits`); `size` (width, height) other
    than 2048 x 1024, which scales the intrinsics.
    """
    from tqdm import tqdm  # noqa: PLC0415

    jobs = [(split_index, split, i) for split_index, split in enumerate(splits) for i in range(count)]
    keys = {split: [] for split in splits}
    for split_index, split, i in tqdm(jobs, desc='sample cityscapes', unit='img', disable=not progress):
        rng = np.random.default_rng([seed, split_index, i])
        city = CITIES[split][i % 2]
        stem = f'{city}_{i // 2:06d}_000019'
        path = _write_record(out_dir, split, city, stem, rng, size)
        keys[split].append(f'leftImg8bit/{split}/{city}/{os.path.basename(path)}')
    return {split: sorted(split_keys) for split, split_keys in keys.items()}


def render_street(rng, camera, height_m):
    """A random street scene: Canvas with labelIds, colour and depth (inf: no surface)."""
    canvas = Canvas(camera, NAME_TO_LABEL_ID['sky'])
    rows = np.linspace(0.0, 1.0, camera.height, dtype=np.float32)[:, None, None]
    canvas.colour[:] = np.array(LABEL_COLOURS[NAME_TO_LABEL_ID['sky']], np.float32) * (1.25 - 0.5 * rows)

    def draw_box(name, lo, hi, checker=0.0, tint=None):
        colour = np.array(LABEL_COLOURS[NAME_TO_LABEL_ID[name]], np.float32)
        colour = colour * (tint if tint is not None else rng.uniform(0.8, 1.2))
        canvas.box(lo, hi, NAME_TO_LABEL_ID[name], np.clip(colour, 8, 255), checker)

    ground, kerb = height_m, height_m - 0.15
    road = rng.uniform(3.0, 6.0)  # half width of the road
    walk = road + rng.uniform(2.0, 4.0)  # outer edge of the sidewalks
    draw_box('road', (-road, ground, 0.0), (road, ground + 0.1, FAR), checker=3.0, tint=1.0)
    for side in (-1, 1):
        near, far = sorted((side * road, side * walk))
        draw_box('sidewalk', (near, kerb, 0.0), (far, ground, FAR), checker=1.0, tint=1.0)
        outer = sorted((side * walk, side * (walk + 40.0)))
        draw_box(rng.choice(['terrain', 'vegetation']), (outer[0], kerb, 0.0), (outer[1], ground, FAR), checker=2.0)
        _draw_facades(draw_box, rng, side, walk + rng.uniform(0.0, 3.0), kerb)
        for z in np.sort(rng.uniform(8.0, 120.0, rng.integers(2, 6))):  # street furniture on the walk
            x = side * rng.uniform(road + 0.5, walk - 0.3)
            _draw_street_object(draw_box, rng, x, z, kerb)
    lanes = np.arange(-road + 1.6, road - 1.5, 3.2)
    for z in np.sort(rng.uniform(6.0, 80.0, rng.integers(2, 7))):  # traffic
        x = rng.choice(lanes) + rng.uniform(-0.3, 0.3)
        kind = rng.choice(['car', 'car', 'car', 'truck', 'bus', 'bicycle'])
        width, tall, length = {
            'car': (1.8, 1.5, 4.3),
            'truck': (2.4, 3.2, 7.0),
            'bus': (2.5, 3.1, 11.0),
            'bicycle': (0.6, 1.1, 1.7),
        }[kind]
        draw_box(kind, (x - width / 2, ground - tall, z), (x + width / 2, ground, z + length))
        if kind == 'bicycle':
            draw_box('rider', (x - 0.25, ground - 1.8, z + 0.6), (x + 0.25, ground - 1.0, z + 1.0))
    return canvas


def _draw_facades(draw_box, rng, side, x, base):
    """Buildings along one side of the street, with gaps (and walls or fences in some of them)."""
    z = rng.uniform(0.0, 10.0)
    while z < FAR:
        length = rng.uniform(8.0, 40.0)
        lo, hi = sorted((side * x, side * (x + 12.0)))
        draw_box('building', (lo, base - rng.uniform(6.0, 25.0), z), (hi, base, z + length), checker=3.0)
        z += length
        gap = rng.uniform(0.0, 15.0) * (rng.random() < 0.5)
        if gap > 1.0:
            lo, hi = sorted((side * x, side * (x + 0.3)))
            name = rng.choice(['wall', 'fence'])
            draw_box(name, (lo, base - rng.uniform(1.0, 2.5), z), (hi, base, z + gap), checker=0.5)
        z += gap


def _draw_street_object(draw_box, rng, x, z, base):
    """A tree, a pole with a sign or a traffic light, or a person, standing at (x, z)."""
    kind = rng.choice(['tree', 'sign', 'light', 'person'])
    if kind == 'tree':
        draw_box('vegetation', (x - 0.2, base - 3.0, z - 0.2), (x + 0.2, base, z + 0.2))
        crown = rng.uniform(1.5, 3.0)
        draw_box(
            'vegetation',
            (x - crown, base - 3.0 - 2 * crown, z - crown),
            (x + crown, base - 3.0, z + crown),
            checker=0.4,
        )
    elif kind == 'person':
        draw_box('person', (x - 0.25, base - rng.uniform(1.5, 1.9), z - 0.15), (x + 0.25, base, z + 0.15))
    else:
        top = base - rng.uniform(3.0, 5.0)
        draw_box('pole', (x - 0.07, top, z - 0.07), (x + 0.07, base, z + 0.07))
        name, (w, h) = ('traffic sign', (0.7, 0.7)) if kind == 'sign' else ('traffic light', (0.35, 0.9))
        draw_box(name, (x - w / 2, top - h, z - 0.12), (x + w / 2, top, z))


def _write_record(out_dir, split, city, stem, rng, size):
    width, height = size
    scale = width / FULL_SIZE[0]
    intrinsic = CAMERA_JSON['intrinsic']
    camera = Camera(
        intrinsic['fx'] * scale,
        intrinsic['fy'] * scale,
        intrinsic['u0'] * scale,
        intrinsic['v0'] * scale,
        width,
        height,
    )
    canvas = render_street(rng, camera, height_m=rng.uniform(1.1, 1.35))
    bonnet = slice(int(round(height * rng.uniform(0.88, 0.93))), height)
    canvas.label[bonnet] = NAME_TO_LABEL_ID['ego vehicle']
    canvas.depth[bonnet] = np.inf
    canvas.colour[bonnet] = (30, 30, 34)
    image = canvas.image(rng, noise=3.0)

    camera_json = json.loads(json.dumps(CAMERA_JSON))
    camera_json['intrinsic'] = {k: v * scale for k, v in intrinsic.items()}
    fx_baseline = camera_json['intrinsic']['fx'] * camera_json['extrinsic']['baseline']
    with np.errstate(divide='ignore'):
        disparity = np.rint(256.0 * fx_baseline / canvas.depth) + 1.0
    disparity = np.where(np.isfinite(canvas.depth), np.clip(disparity, 2, 65535), 0)
    disparity[rng.random(disparity.shape) < DROPOUT] = 0

    def path(kind, suffix):
        folder = os.path.join(out_dir, kind, split, city)
        os.makedirs(folder, exist_ok=True)
        return os.path.join(folder, f'{stem}_{suffix}')

    image_path = path('leftImg8bit', 'leftImg8bit.png')
    _imwrite(image_path, image[:, :, ::-1])
    if split in ('train', 'val'):
        _imwrite(path('gtFine', 'gtFine_labelIds.png'), canvas.label.astype(np.uint8))
    _imwrite(path('disparity', 'disparity.png'), disparity.astype(np.uint16))
    with open(path('camera', 'camera.json'), 'w', encoding='utf-8') as f:
        json.dump(camera_json, f, indent=2)
    return image_path


def _imwrite(path, array):
    if not cv2.imwrite(path, array):
        raise DataError(path, 'cannot write PNG (a missing folder, or a read-only or full disk?)')
