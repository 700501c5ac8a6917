"""A tiny z-buffer renderer of axis-aligned rectangles and boxes, for the sample datasets.

The sample writers compose street scenes (ground plane, facades, cars) and rooms (walls, floor,
furniture) from these primitives, so that every pixel's colour, class and depth come from the
same surface: label and depth agree and a net can learn from them. Camera frame: x right,
y down, z forward (metres); depth is z, as stereo and Kinect depth maps store it.
"""

from typing import NamedTuple

import numpy as np

#: Nearest depth drawn (metres); surfaces in front of it are clipped.
NEAR = 0.05


class Camera(NamedTuple):
    """Pinhole intrinsics and image size in pixels."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int


class Canvas:
    """Colour, class id and depth buffers of one image; `rect`/`box`/`room` draw into them."""

    def __init__(self, camera, background_label, background_colour=(0, 0, 0), label_dtype=np.uint8):
        self.camera = camera
        shape = (camera.height, camera.width)
        self.depth = np.full(shape, np.inf)  # inf: nothing drawn (sky, far)
        self.label = np.full(shape, background_label, label_dtype)
        self.colour = np.empty(shape + (3,), np.float32)
        self.colour[:] = background_colour

    def rect(self, axis, value, bounds, label, colour, checker=1.0):
        """The rectangle {p: p[axis] == value, p[other axes] within `bounds`}.

        `bounds`: ((lo, hi), (lo, hi)) for the two other axes in increasing axis order.
        `checker`: side in metres of a +-8 % brightness checkerboard on the face (0: none),
        a texture whose perspective shrinking carries depth cues.
        """
        cam = self.camera
        others = [a for a in range(3) if a != axis]
        limits = {axis: (value, value), others[0]: tuple(bounds[0]), others[1]: tuple(bounds[1])}
        zlo, zhi = limits[2]
        zlo = max(zlo, NEAR)
        if zhi < zlo:
            return
        limits[2] = (zlo, zhi)
        corners = np.array([(x, y, z) for x in limits[0] for y in limits[1] for z in limits[2]], float)
        u = cam.fx * corners[:, 0] / corners[:, 2] + cam.cx
        v = cam.fy * corners[:, 1] / corners[:, 2] + cam.cy
        c0, c1 = max(int(np.floor(u.min())), 0), min(int(np.ceil(u.max())) + 1, cam.width)
        r0, r1 = max(int(np.floor(v.min())), 0), min(int(np.ceil(v.max())) + 1, cam.height)
        if c0 >= c1 or r0 >= r1:
            return
        # ray through each pixel centre: (dx, dy, 1); the plane p[axis] == value fixes its depth.
        # Coordinates keep their smallest broadcast shape (a row, a column or a scalar) until the end.
        ray = (
            ((np.arange(c0, c1) - cam.cx) / cam.fx)[None, :],
            ((np.arange(r0, r1) - cam.cy) / cam.fy)[:, None],
            np.ones((1, 1)),
        )
        with np.errstate(divide='ignore', invalid='ignore'):
            z = value / ray[axis]
            point = [z * ray[a] for a in range(3)]
        shape = (r1 - r0, c1 - c0)
        hit = np.isfinite(z) & (z >= NEAR)
        for a in others:
            hit = hit & (point[a] >= limits[a][0]) & (point[a] <= limits[a][1])
        window = (slice(r0, r1), slice(c0, c1))
        z = np.broadcast_to(z, shape)
        hit = np.broadcast_to(hit, shape) & (z < self.depth[window])
        if not hit.any():
            return
        shade = np.float32(1.0 - 0.12 * axis)  # faces of each orientation a little darker: shape cues
        if checker:
            cells = np.floor(point[others[0]] / checker) + np.floor(point[others[1]] / checker)
            shade = shade * np.where(cells % 2 == 0, np.float32(1.08), np.float32(0.92))
        colour = np.asarray(colour, np.float32) * np.broadcast_to(shade, shape)[..., None]
        np.copyto(self.depth[window], z, where=hit)
        np.copyto(self.label[window], label, where=hit, casting='unsafe')
        np.copyto(self.colour[window], colour, where=hit[..., None])

    def box(self, lo, hi, label, colour, checker=1.0):
        """An axis-aligned box seen from outside: the faces that face the camera."""
        for axis in range(3):
            span = [(lo[a], hi[a]) for a in range(3) if a != axis]
            if lo[axis] > 0:
                self.rect(axis, lo[axis], span, label, colour, checker)
            elif hi[axis] < 0:
                self.rect(axis, hi[axis], span, label, colour, checker)

    def room(self, lo, hi, faces, checker=1.0):
        """The inside of a box (camera inside): `faces[(axis, side)] = (label, colour)`, side 0 = lo."""
        for (axis, side), (label, colour) in faces.items():
            span = [(lo[a], hi[a]) for a in range(3) if a != axis]
            self.rect(axis, (lo, hi)[side][axis], span, label, colour, checker)

    def image(self, rng, noise=4.0):
        """H x W x 3 uint8 RGB: the colour buffer plus Gaussian sensor noise of `noise` grey levels."""
        colour = self.colour + np.float32(noise) * rng.standard_normal(self.colour.shape, dtype=np.float32)
        return np.clip(np.rint(colour), 0, 255).astype(np.uint8)
