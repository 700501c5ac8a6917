"""Procedural indoor rooms for the SUN-RGBD and NYUv2 sample datasets.

A room (floor, ceiling, three walls) seen by a level camera, with furniture built from boxes
standing on the floor and flat items (windows, doors, pictures) on the walls, drawn with
`data_prep.synth` so that colour, class and depth of every pixel come from one surface. Each
class has its own colour, texture and typical shape and size, so a net can learn to segment it;
the floor, ceiling and box tops give depth cues through perspective.

Classes are named by role (the SUN-RGBD class names, paper L450); the caller maps roles to the ids
of its dataset's label table, and only roles it maps are drawn. Id 0 means "unlabeled" in both
datasets: the `clutter` role draws unlabelled objects, and `unlabeled_edges` clears a one-pixel
band along object boundaries, as the real annotations leave gaps there.
"""

from typing import NamedTuple

import numpy as np

from data_prep.synth import Canvas

#: Base colour (RGB) of each role; scenes jitter it a little. Unlisted roles are grey.
COLOURS = {
    'wall': (196, 188, 170),
    'floor': (128, 92, 60),
    'ceiling': (232, 232, 226),
    'cabinet': (150, 96, 48),
    'bed': (70, 100, 160),
    'chair': (170, 40, 40),
    'sofa': (60, 130, 80),
    'table': (200, 150, 90),
    'door': (110, 70, 40),
    'window': (150, 200, 240),
    'bookshelf': (90, 60, 30),
    'picture': (220, 180, 40),
    'counter': (90, 90, 100),
    'blinds': (230, 220, 190),
    'desk': (160, 120, 70),
    'curtain': (150, 40, 110),
    'dresser': (120, 80, 50),
    'pillow': (240, 240, 250),
    'mirror': (200, 220, 220),
    'books': (30, 70, 150),
    'fridge': (225, 228, 232),
    'tv': (25, 25, 30),
    'box': (185, 150, 100),
    'whiteboard': (248, 248, 248),
    'night_stand': (140, 90, 60),
    'lamp': (250, 230, 150),
    'bottle': (40, 160, 60),
    'clutter': (120, 120, 120),
}

#: Checkerboard side (metres) of each role's texture; 0: plain.
CHECKERS = {
    'floor': 0.5,
    'wall': 0.0,
    'ceiling': 0.0,
    'bookshelf': 0.3,
    'fridge': 0.0,
    'window': 0.4,
    'curtain': 0.15,
    'blinds': 0.06,
    'pillow': 0.0,
    'tv': 0.0,
}

#: Furniture of each scene type, in drawing priority; a type is used when the dataset maps at
#: least two of its roles.
SCENES = {
    'bedroom': ['bed', 'night_stand', 'dresser', 'lamp', 'chair', 'clutter'],
    'living_room': ['sofa', 'table', 'tv', 'cabinet', 'lamp', 'chair', 'box', 'clutter'],
    'office': ['desk', 'chair', 'bookshelf', 'cabinet', 'box', 'clutter', 'table'],
    'kitchen': ['counter', 'fridge', 'table', 'chair', 'cabinet', 'box', 'clutter'],
}
WALL_ITEMS = ['window', 'picture', 'door', 'whiteboard', 'mirror', 'curtain', 'blinds']
TABLE_PROPS = ['books', 'box', 'bottle', 'clutter']


class Room(NamedTuple):
    """The room box in the camera frame (x right, y down, z forward; metres)."""

    left: float
    right: float
    ceiling: float  # y of the ceiling (< 0: above the camera)
    floor: float  # y of the floor (> 0: the camera height)
    back: float  # z of the far wall


class IndoorScene(NamedTuple):
    image: np.ndarray  # H x W x 3 uint8 RGB
    label: np.ndarray  # H x W uint16, the caller's ids (0 = unlabeled)
    depth: np.ndarray  # H x W float64 metres along the optical axis, all finite
    kind: str  # scene type, a key of SCENES (or 'empty')


def render_room(camera, ids, rng, depth_range=(3.0, 8.0), unlabeled_edges=True):
    """Render one random room seen by `camera` (a `data_prep.synth.Camera`).

    `ids`: role -> label id (the roles `wall`, `floor`, `ceiling` are required).
    `depth_range`: (near, far) metres for the distance of the far wall.
    """
    painter = _Painter(camera, ids, rng)
    width = rng.uniform(3.0, 6.0)
    offset = rng.uniform(-0.25, 0.25) * width
    camera_height = rng.uniform(1.1, 1.6)
    room = Room(
        left=offset - width / 2,
        right=offset + width / 2,
        ceiling=camera_height - rng.uniform(2.5, 3.1),
        floor=camera_height,
        back=rng.uniform(*depth_range),
    )
    painter.room(room)
    for role in rng.permutation(WALL_ITEMS)[: rng.integers(1, 4)]:
        painter.wall_item(room, str(role))
    kind, furniture = _furniture(ids, rng)
    for role in furniture:
        painter.furniture(room, role)
    label = painter.canvas.label
    if unlabeled_edges:
        label = _clear_edges(label)
    return IndoorScene(painter.canvas.image(rng, noise=3.0), label, painter.canvas.depth, kind)


def _furniture(ids, rng):
    """(scene type, furniture roles) of a random scene type the dataset can label."""
    usable = [s for s, roles in SCENES.items() if sum(r in ids for r in roles if r != 'clutter') >= 2]
    if not usable:
        return 'empty', []
    kind = usable[rng.integers(len(usable))]
    roles = [r for r in SCENES[kind] if r in ids]
    keep = rng.integers(max(len(roles) - 2, 1), len(roles) + 1)
    return kind, roles[:keep]


def _clear_edges(label):
    """Set pixels whose right or lower neighbour has another id to 0 (unlabeled)."""
    out = label.copy()
    edge = np.zeros(label.shape, bool)
    edge[:, :-1] |= label[:, :-1] != label[:, 1:]
    edge[:-1, :] |= label[:-1, :] != label[1:, :]
    out[edge] = 0
    return out


def furniture_shape(role, u):
    """(width, depth, stands against the wall) of a piece of furniture of `role`, scale `u`."""
    return {
        'bed': (1.5 * u, 2.0 * u, True),
        'night_stand': (0.45 * u, 0.4 * u, True),
        'dresser': (1.2 * u, 0.5 * u, True),
        'lamp': (0.35, 0.35, False),
        'chair': (0.45 * u, 0.45 * u, False),
        'sofa': (1.9 * u, 0.9 * u, False),
        'table': (1.2 * u, 0.8 * u, False),
        'tv': (1.0 * u, 0.45, True),
        'cabinet': (0.8 * u, 0.5 * u, True),
        'box': (0.4 * u, 0.35 * u, False),
        'clutter': (0.3 * u, 0.3 * u, False),
        'desk': (1.3 * u, 0.7 * u, True),
        'bookshelf': (0.9 * u, 0.35, True),
        'counter': (2.2 * u, 0.6, True),
        'fridge': (0.75, 0.7, True),
    }[role]


class _Painter:
    """Draws roles onto a `synth.Canvas` with the dataset's ids and this scene's colours."""

    def __init__(self, camera, ids, rng):
        self.canvas = Canvas(camera, background_label=0, label_dtype=np.uint16)
        self.ids = ids
        self.rng = rng
        self.colours = {}
        self.footprints = []  # (x0, x1, z0, z1) of furniture on the floor

    def colour(self, role):
        if role not in self.colours:
            base = np.asarray(COLOURS.get(role, (128, 128, 128)), float)
            self.colours[role] = np.clip(base * self.rng.uniform(0.85, 1.15) + self.rng.normal(0, 6, 3), 0, 255)
        return self.colours[role]

    def box(self, role, lo, hi):
        if role in self.ids:
            self.canvas.box(lo, hi, self.ids[role], self.colour(role), CHECKERS.get(role, 0.25))

    def rect(self, role, axis, value, bounds):
        if role in self.ids:
            self.canvas.rect(axis, value, bounds, self.ids[role], self.colour(role), CHECKERS.get(role, 0.25))

    def room(self, room):
        self.floor = room.floor
        faces = {(0, 0): 'wall', (0, 1): 'wall', (2, 1): 'wall', (1, 0): 'ceiling', (1, 1): 'floor'}
        lo, hi = (room.left, room.ceiling, -1.0), (room.right, room.floor, room.back)
        for (axis, side), role in faces.items():
            span = [(lo[a], hi[a]) for a in range(3) if a != axis]
            self.rect(role, axis, (lo, hi)[side][axis], span)

    # ---------------------------------------------------------------------------------
    def wall_item(self, room, role):
        """A flat item 1 cm in front of the far wall or a side wall."""
        rng = self.rng
        sizes = {
            'door': (0.9, 2.05),
            'window': (1.2, 1.2),
            'picture': (0.6, 0.45),
            'whiteboard': (1.6, 1.0),
            'mirror': (0.5, 0.9),
            'curtain': (0.8, 2.0),
            'blinds': (1.1, 1.1),
        }
        w, h = np.asarray(sizes[role]) * rng.uniform(0.8, 1.2)
        bottom = 0.0 if role in ('door', 'curtain') else rng.uniform(0.8, 1.3)
        y0, y1 = room.floor - bottom - h, room.floor - bottom
        y0 = max(y0, room.ceiling + 0.05)
        if rng.random() < 0.6:  # far wall
            x0 = rng.uniform(room.left + 0.1, max(room.right - w - 0.1, room.left + 0.1))
            self.rect(role, 2, room.back - 0.01, ((x0, x0 + w), (y0, y1)))
        else:  # a side wall
            x = room.left + 0.01 if rng.random() < 0.5 else room.right - 0.01
            z0 = rng.uniform(1.0, max(room.back - w - 0.1, 1.0))
            self.rect(role, 0, x, ((y0, y1), (z0, z0 + w)))

    def place(self, room, width, depth, against_wall):
        """A free floor footprint (x0, x1, z0, z1) or None."""
        rng = self.rng
        for _ in range(20):
            x0 = rng.uniform(room.left + 0.05, room.right - width - 0.05)
            z0 = room.back - depth - 0.02 if against_wall else rng.uniform(1.3, room.back - depth - 0.1)
            fp = (x0, x0 + width, z0, z0 + depth)
            if z0 > 1.0 and all(fp[1] < o[0] or fp[0] > o[1] or fp[3] < o[2] or fp[2] > o[3] for o in self.footprints):
                self.footprints.append(fp)
                return fp
        return None

    def slab(self, role, fp, bottom, top):
        """A box over footprint `fp` between heights `bottom` and `top` above the floor."""
        x0, x1, z0, z1 = fp
        self.box(role, (x0, self.floor - top, z0), (x1, self.floor - bottom, z1))

    def legs(self, role, fp, top, side=0.05):
        x0, x1, z0, z1 = fp
        for x in (x0, x1 - side):
            for z in (z0, z1 - side):
                self.slab(role, (x, x + side, z, z + side), 0.0, top)

    def furniture(self, room, role):
        """One piece of furniture of `role` with its parts (pillows, props, ...)."""
        u = self.rng.uniform(0.85, 1.15)  # the piece's scale
        width, depth, against_wall = furniture_shape(role, u)
        fp = self.place(room, min(width, room.right - room.left - 0.2), depth, against_wall)
        if fp is not None:
            self.build(role, fp, u)

    def build(self, role, fp, u):
        """The boxes of a piece of furniture of `role` on footprint `fp` (x0, x1, z0, z1), scale `u`."""
        rng = self.rng
        x0, x1, z0, z1 = fp
        if role in ('table', 'desk'):
            top = 0.74 * u
            self.slab(role, fp, top - 0.04, top)
            self.legs(role, fp, top - 0.04)
            if role == 'desk':
                self.slab(role, (x1 - 0.45, x1, z0, z1), 0.0, top - 0.04)
            self.props(fp, top)
        elif role == 'chair':
            self.slab(role, fp, 0.42, 0.46)
            self.slab(role, (x0, x1, z1 - 0.05, z1), 0.46, 0.9 * u)
            self.legs(role, fp, 0.42, side=0.04)
        elif role == 'sofa':
            self.slab(role, fp, 0.0, 0.42)
            self.slab(role, (x0, x1, z1 - 0.22, z1), 0.42, 0.85)
            self.slab(role, (x0, x0 + 0.18, z0, z1), 0.42, 0.6)
            self.slab(role, (x1 - 0.18, x1, z0, z1), 0.42, 0.6)
        elif role == 'bed':
            self.slab(role, fp, 0.0, 0.5)
            self.slab(role, (x0, x1, z1 - 0.06, z1), 0.5, 1.05)
            for px in (x0 + 0.1, (x0 + x1) / 2 + 0.05):
                self.slab('pillow', (px, px + (x1 - x0) / 2 - 0.15, z1 - 0.5, z1 - 0.1), 0.5, 0.62)
        elif role == 'lamp':
            cx, cz = (x0 + x1) / 2, (z0 + z1) / 2
            self.slab(role, (cx - 0.03, cx + 0.03, cz - 0.03, cz + 0.03), 0.0, 1.3)
            self.slab(role, fp, 1.3, 1.6)
        elif role == 'tv':
            self.slab('cabinet', fp, 0.0, 0.5)
            self.slab(role, (x0 + 0.05, x1 - 0.05, z1 - 0.1, z1 - 0.04), 0.5, 0.5 + 0.6 * u)
        elif role == 'bookshelf':
            height = 1.8 * u
            self.slab(role, fp, 0.0, height)
            for shelf in np.arange(0.3, height - 0.3, 0.4):
                if rng.random() < 0.8:
                    self.slab(
                        'books',
                        (x0 + 0.05, x1 - rng.uniform(0.05, 0.4), z0 - 0.03, z0 + 0.1),
                        shelf,
                        shelf + rng.uniform(0.18, 0.3),
                    )
        elif role == 'counter':
            self.slab(role, fp, 0.0, 0.9)
            self.slab('cabinet', (x0, x1, z0 + 0.2, z1), 1.4, 2.1)
            self.props((x0, x1, z0, z1 - 0.3), 0.9)
        else:  # a plain box: cabinet, dresser, night_stand, fridge, box, clutter
            heights = {'cabinet': 0.9, 'dresser': 1.0, 'night_stand': 0.55, 'fridge': 1.8, 'box': 0.35, 'clutter': 0.3}
            top = heights[role] * u
            self.slab(role, fp, 0.0, top)
            if role in ('dresser', 'night_stand', 'cabinet'):
                self.props(fp, top)

    def props(self, fp, top):
        """Up to three small objects standing on a surface of height `top`."""
        rng = self.rng
        x0, x1, z0, z1 = fp
        for _ in range(rng.integers(0, 4)):
            role = TABLE_PROPS[rng.integers(len(TABLE_PROPS))]
            w, d, h = rng.uniform(0.08, 0.3), rng.uniform(0.08, 0.25), rng.uniform(0.05, 0.3)
            if x1 - x0 <= w or z1 - z0 <= d:
                continue
            px, pz = rng.uniform(x0, x1 - w), rng.uniform(z0, z1 - d)
            self.slab(role, (px, px + w, pz, pz + d), top, top + h)
