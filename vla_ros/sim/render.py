"""Vectorised numpy rendering of one camera: sky and distant hills, the ground by ray-ground
intersection shaded in road (Frenet) coordinates, and boxes by ray-box (slab) intersection.

Why it is fast: cameras are rigid and the ground is flat, so the ground point every pixel sees
is fixed in the ego frame and precomputed once; per frame only the road's pose relative to the
ego changes. Frenet coordinates (s, d) of each ground pixel come from three Newton steps on the
centreline table (complex arithmetic: one multiply gives both s and d). Thin paint (lane lines,
dashes) is box-filtered against each pixel's ground footprint, so distant markings fade instead
of flickering.
"""
from __future__ import annotations

import math

import numpy as np

from vla_ros.sim.camera import CameraSpec, intrinsics, pixel_rays, project, rotation
from vla_ros.sim.glyphs import road_number, sign_texture
from vla_ros.sim.road import DASH_LENGTH, DASH_PERIOD, EDGE_D, LINE_HALF_WIDTH, SHOULDER, STEP, lane_d
from vla_ros.sim.scene import CHECKER, GLASS, ROAD_NUMBER_LENGTH, Box, RoadWindow, Scene

FAR = 700.0  # m; ground beyond this is pure haze
FOG = 450.0  # m; fog extinction length
GRASS = np.array((78, 112, 52), dtype=np.float32)
ASPHALT = np.array((92, 92, 98), dtype=np.float32)
PAINT = np.array((236, 236, 228), dtype=np.float32)
HAZE = np.array((188, 198, 212), dtype=np.float32)
SKY_TOP = np.array((70, 120, 200), dtype=np.float32)
HILLS = np.array((105, 128, 120), dtype=np.float32)
ROAD_HALF = EDGE_D + SHOULDER
HILL_SAMPLES = 1440
STRIDE = 4  # columns between exact road-geometry solves
NEWTON_STEPS = 2  # from the tangent-at-ego guess; a third step changes no visible pixel


def _stripe(a: np.ndarray, half: float, h: np.ndarray, inv_f: np.ndarray) -> np.ndarray:
    """Fraction of a pixel footprint of width f = 2h (centred a >= 0 from a stripe's centre
    line) covered by a stripe of half-width `half` (box filter); inv_f = 1 / f."""
    out = np.minimum(a + h, half)
    out += np.minimum(h - a, half)
    np.maximum(out, 0.0, out=out)
    out *= inv_f
    return out


def hill_profile() -> np.ndarray:
    """(HILL_SAMPLES,) float32 elevation (rad) of the distant hills over world azimuth."""
    az = np.arange(HILL_SAMPLES) * (2 * math.pi / HILL_SAMPLES)
    h = 0.018 + 0.012 * np.sin(3 * az + 0.7) + 0.008 * np.sin(7 * az + 2.1) + 0.005 * np.sin(17 * az + 0.3) + 0.003 * np.sin(41 * az)
    return np.maximum(h, 0.004).astype(np.float32)


class GroundGrid:
    """The ground seen by a block of `rows` x `cols` pixels, with what shading needs precomputed.

    Along an image row of a pinhole camera (or a bird's-eye raster) ground points are affine in
    the column, so the road geometry is solved only on every STRIDE-th column (plus one past the
    end) and interpolated in between: four times fewer Newton steps, no visible difference.
    `points(rows_v, cols_u)` maps (R,) rows x (C,) fractional columns to (R, C) complex ground
    points (ego frame, x + iy); `fog` is (rows, cols) in [0, 1].
    """

    def __init__(self, points, rows: np.ndarray, cols: int, fog: np.ndarray) -> None:
        if cols % STRIDE:
            raise ValueError(f"ground grid width {cols} is not a multiple of {STRIDE}")
        u = np.arange(0, cols + 1, STRIDE, dtype=np.float64)
        v = rows.astype(np.float64)
        self.rows, self.cols = len(rows), cols
        self.p = points(v, u).reshape(-1).astype(np.complex64)
        self.du = (points(v, u + 0.5) - points(v, u - 0.5)).reshape(-1).astype(np.complex64)
        self.dv = (points(v + 0.5, u) - points(v - 0.5, u)).reshape(-1).astype(np.complex64)
        fog = np.clip(fog, 0.0, 1.0).reshape(-1).astype(np.float32)
        self.clear = 1.0 - fog
        self.fog_haze = [fog * HAZE[c] + np.float32(0.5) for c in range(3)]  # + 0.5: round on cast

    @property
    def size(self) -> int:
        return self.rows * self.cols

    def _fine(self, coarse: np.ndarray) -> np.ndarray:
        """(rows * (cols/STRIDE + 1),) -> (rows * cols,) by linear interpolation along rows.
        One pass per phase: a broadcast over a last axis of length STRIDE is several times slower."""
        c = coarse.reshape(self.rows, -1)
        left = c[:, :-1]
        diff = c[:, 1:] - left
        fine = np.empty((self.rows, c.shape[1] - 1, STRIDE), dtype=np.float32)
        for j in range(STRIDE):
            np.multiply(diff, np.float32(j / STRIDE), out=fine[:, :, j])
            fine[:, :, j] += left
        return fine.reshape(-1)

    def _nearest(self, coarse: np.ndarray) -> np.ndarray:
        return np.repeat(coarse.reshape(self.rows, -1)[:, :-1], STRIDE, axis=1).reshape(-1)


def shade_ground(grid: GroundGrid, win: RoadWindow, out: np.ndarray) -> None:
    """Colour the grid's ground points into `out` ((rows * cols, 3) uint8)."""
    p = grid.p
    n_win = win.n
    # Initial guess: project onto the road's tangent at the ego, then Newton on the table.
    kf = ((p - np.complex64(win.ego_point)) * np.complex64(win.ego_tangent_conj)).real
    kf *= 1.0 / STEP
    kf += np.float32(win.ego_index)
    for _ in range(NEWTON_STEPS):
        np.clip(kf, 0.0, n_win - 1.0, out=kf)
        kf += 0.5
        k = kf.astype(np.intp)
        tc = win.tangents_conj[k]
        q = p - win.points[k]
        q *= tc
        kf = q.real * np.float32(1.0 / STEP)
        kf += k
    # Where Newton did not settle the point is far from this stretch of road: push it off-road
    # (interpolation then carries that into the neighbouring pixels).
    d_coarse = q.imag + (np.abs(q.real) > STEP) * np.float32(1e4)
    # Footprint of a pixel across (fn) and along (ft) the road.
    fu = grid.du * tc
    fv = grid.dv * tc
    fn = np.abs(fu.imag)
    fn += np.abs(fv.imag)
    np.maximum(fn, 1e-3, out=fn)
    ft = np.abs(fu.real)
    ft += np.abs(fv.real)
    np.clip(ft, 1e-3, DASH_PERIOD, out=ft)
    fade = np.maximum(fn, ft)  # the grass checker fades out where a pixel spans a cell
    fade *= -1.0 / CHECKER
    fade += 1.0
    np.clip(fade, 0.0, 1.0, out=fade)

    s = grid._fine(kf) * np.float32(STEP)  # window-relative arc length
    d = grid._fine(d_coarse)
    fn = grid._nearest(fn)
    ft = grid._nearest(ft)
    inv_fn = 1.0 / fn
    fn *= 0.5  # half footprint from here on
    ad = np.abs(d)

    road = _stripe(ad, ROAD_HALF, fn, inv_fn)
    edge = _stripe(np.abs(ad - EDGE_D), 1.4 * LINE_HALF_WIDTH, fn, inv_fn)
    centre = _stripe(ad, LINE_HALF_WIDTH, fn, inv_fn)
    u = s + np.float32(win.dash_phase - DASH_LENGTH / 2)
    u -= np.floor(u * np.float32(1.0 / DASH_PERIOD)) * np.float32(DASH_PERIOD)  # float '%' is ~20x slower
    u -= DASH_PERIOD / 2
    np.abs(u, out=u)
    dash_dist = np.float32(DASH_PERIOD / 2) - u
    inv_ft = 1.0 / ft
    ft *= 0.5
    centre *= _stripe(dash_dist, DASH_LENGTH / 2, ft, inv_ft)
    paint = np.maximum(edge, centre)
    for at, kph in win.numbers:
        _paint_number(s, d, at, kph, paint)
    np.minimum(paint, road, out=paint)

    # Grass: a checker in road coordinates (it bends with the road), faded with footprint size.
    cell = np.floor((s + np.float32(win.checker_phase)) * np.float32(1.0 / CHECKER))
    cell += np.floor(d * np.float32(1.0 / CHECKER))
    cell -= np.floor(cell * np.float32(0.5)) * np.float32(2.0)  # parity 0/1
    cell *= grid._nearest(fade)
    cell *= 0.16
    cell += 0.92

    # colour = fog*haze + clear*(grass*cell*(1-road) + asphalt*(road-paint) + paint_colour*paint)
    w_grass = 1.0 - road
    w_grass *= cell
    w_grass *= grid.clear
    road *= grid.clear
    paint *= grid.clear
    for c in range(3):
        ch = w_grass * GRASS[c]
        ch += road * ASPHALT[c]
        ch += paint * (PAINT[c] - ASPHALT[c])
        ch += grid.fog_haze[c]
        out[:, c] = ch


def _paint_number(s: np.ndarray, d: np.ndarray, at: float, kph: int, paint: np.ndarray) -> None:
    """Paint the limit in the ego lane from window-relative s = at (digits read from behind)."""
    sel = np.nonzero((s >= at) & (s < at + ROAD_NUMBER_LENGTH))[0]
    if sel.size == 0:
        return
    bits = road_number(kph)
    rows, cols = bits.shape
    width = 0.32 * cols  # m across the lane
    dl = d[sel] - (lane_d(0) + width / 2)
    inside = (dl <= 0) & (dl > -width)
    sel = sel[inside]
    if sel.size == 0:
        return
    r = ((at + ROAD_NUMBER_LENGTH - s[sel]) * (rows / ROAD_NUMBER_LENGTH)).astype(np.intp).clip(0, rows - 1)
    c = ((-dl[inside]) * (cols / width)).astype(np.intp).clip(0, cols - 1)
    paint[sel] = np.maximum(paint[sel], bits[r, c])


class CameraRenderer:
    """Renders one camera of the rig at (height, width). Not thread-safe per instance; distinct
    instances may render in parallel threads."""

    def __init__(self, spec: CameraSpec, width: int, height: int) -> None:
        self.spec = spec
        self.width, self.height = width, height
        rays = pixel_rays(spec, width, height)  # (H, W, 3)
        self.rx, self.ry, self.rz = (np.ascontiguousarray(rays[..., i]) for i in range(3))
        self.origin = np.asarray(spec.xyz, dtype=np.float64)
        rz = rays[:, 0, 2].astype(np.float64)  # no roll: ray height depends on the row only
        ground_rows = np.nonzero(rz < -1e-6)[0]
        self.g0 = int(ground_rows[0]) if ground_rows.size else height
        self.background = self._background(rays)
        # Ground rows worth shading: some pixel nearer than FAR.
        k = intrinsics(spec, width, height)
        rot = rotation(spec)
        o = self.origin

        def points(v: np.ndarray, u: np.ndarray) -> np.ndarray:
            x = ((u - k.cx) / k.fx)[None, :]
            y = ((v - k.cy) / k.fy)[:, None]
            r = [rot[i, 0] * x + rot[i, 1] * y + rot[i, 2] for i in range(3)]
            lam = -o[2] / np.minimum(r[2], -1e-9)
            return (o[0] + lam * r[0]) + 1j * (o[1] + lam * r[1])

        all_rows = np.arange(self.g0, height)
        dist = np.abs(points(all_rows.astype(np.float64), np.arange(width, dtype=np.float64)) - complex(o[0], o[1]))
        near = np.nonzero(dist.min(axis=1) < FAR)[0]
        self.a0 = int(all_rows[near[0]]) if near.size else height
        dist = dist[self.a0 - self.g0 :]
        fog = (1.0 - np.exp(-dist / FOG)) / (1.0 - math.exp(-FAR / FOG))  # pure haze at FAR: no seam
        self.grid = GroundGrid(points, np.arange(self.a0, height), width, fog) if self.a0 < height else None
        # Hills: a band of rows just above the horizon; per-pixel elevation and ego-frame azimuth.
        elev = np.arcsin(np.clip(rays[..., 2], -1, 1))
        band = np.nonzero((elev.max(axis=1) > 0) & (elev.min(axis=1) < float(hill_profile().max())))[0]
        band = band[band < self.g0]
        self.h0, self.h1 = (int(band[0]), int(band[-1]) + 1) if band.size else (0, 0)
        self.hill_elev = elev[self.h0 : self.h1].astype(np.float32)
        az = np.arctan2(rays[self.h0 : self.h1, :, 1], rays[self.h0 : self.h1, :, 0])
        self.hill_az = np.floor(az * (HILL_SAMPLES / (2 * math.pi))).astype(np.intp)
        self.hill_fog = np.float32(0.55)
        self.hills = hill_profile()
        self.zbuf = np.empty((height, width), dtype=np.float32)

    def _background(self, rays: np.ndarray) -> np.ndarray:
        """Sky gradient above the horizon, haze below it (overwritten where ground is shaded)."""
        elev = np.clip(rays[..., 2:3], -1.0, 1.0)
        t = np.clip(elev / 0.45, 0.0, 1.0) ** 0.7
        sky = HAZE * (1 - t) + SKY_TOP * t
        return (sky + 0.5).astype(np.uint8)

    def render(self, scene: Scene, out: np.ndarray | None = None) -> np.ndarray:
        """(H, W, 3) uint8 RGB image of `scene`."""
        img = out if out is not None else np.empty((self.height, self.width, 3), dtype=np.uint8)
        img[:] = self.background
        self._hills(scene.ego_yaw, img)
        if self.grid is not None:
            shade_ground(self.grid, scene.road, img[self.a0 :].reshape(-1, 3))
        if scene.boxes:
            self.zbuf.fill(np.inf)
        for box in scene.boxes:
            self._box(box, scene.sun, img)
        return img

    def _hills(self, yaw: float, img: np.ndarray) -> None:
        if self.h1 <= self.h0:
            return
        shift = int(math.floor(yaw * HILL_SAMPLES / (2 * math.pi))) % HILL_SAMPLES
        mask = self.hill_elev < np.take(self.hills, self.hill_az + shift, mode="wrap")
        col = (HILLS * (1 - self.hill_fog) + HAZE * self.hill_fog + 0.5).astype(np.uint8)
        img[self.h0 : self.h1][mask] = col

    def _bbox(self, box: Box) -> tuple[int, int, int, int] | None:
        """Pixel rectangle (v0, v1, u0, u1) that may show the box, or None if it is not visible."""
        c, s = math.cos(box.yaw), math.sin(box.yaw)
        hx, hy, hz = box.half
        corners = np.array([[sx * hx, sy * hy, sz * hz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
        world = np.empty_like(corners)
        world[:, 0] = box.center[0] + c * corners[:, 0] - s * corners[:, 1]
        world[:, 1] = box.center[1] + s * corners[:, 0] + c * corners[:, 1]
        world[:, 2] = box.center[2] + corners[:, 2]
        if float(np.min(np.hypot(world[:, 0] - self.origin[0], world[:, 1] - self.origin[1]))) > FAR:
            return None
        uv, z = project(self.spec, self.width, self.height, world)
        near = 0.05
        front = z >= near
        if not front.any():
            return None
        if not front.all():
            # Clip the box's edges at the near plane; the bbox of what is in front is exact.
            pts = [world[front]]
            for i in range(8):
                for j in range(i + 1, 8):
                    if bin(i ^ j).count("1") == 1 and front[i] != front[j]:
                        a = (near - z[i]) / (z[j] - z[i])
                        pts.append((world[i] + a * (world[j] - world[i]))[None])
            uv, _ = project(self.spec, self.width, self.height, np.concatenate(pts))
            uv = np.clip(uv, -1e6, 1e6)
        u0 = max(int(math.floor(uv[:, 0].min())) - 1, 0)
        u1 = min(int(math.ceil(uv[:, 0].max())) + 2, self.width)
        v0 = max(int(math.floor(uv[:, 1].min())) - 1, 0)
        v1 = min(int(math.ceil(uv[:, 1].max())) + 2, self.height)
        if u0 >= u1 or v0 >= v1:
            return None
        return v0, v1, u0, u1

    def _box(self, box: Box, sun: np.ndarray, img: np.ndarray) -> None:
        """Slab-method ray-box intersection over the box's screen rectangle, z-buffered."""
        bb = self._bbox(box)
        if bb is None:
            return
        v0, v1, u0, u1 = bb
        rx, ry, rz = self.rx[v0:v1, u0:u1], self.ry[v0:v1, u0:u1], self.rz[v0:v1, u0:u1]
        c, s = math.cos(box.yaw), math.sin(box.yaw)
        o = self.origin - box.center
        origin_local = (c * o[0] + s * o[1], -s * o[0] + c * o[1], o[2])
        dirs = (c * rx + s * ry, c * ry - s * rx, rz)  # ray directions in the box frame
        t_in = t_out = None
        near_axis = []
        with np.errstate(divide="ignore", invalid="ignore"):
            for ol, dl, h in zip(origin_local, dirs, box.half):
                inv = 1.0 / dl
                t1 = (np.float32(-h - ol)) * inv
                t2 = (np.float32(h - ol)) * inv
                tn = np.minimum(t1, t2)
                tf = np.maximum(t1, t2)
                near_axis.append(tn)
                t_in = tn if t_in is None else np.maximum(t_in, tn)
                t_out = tf if t_out is None else np.minimum(t_out, tf)
        zb = self.zbuf[v0:v1, u0:u1]
        hit = (t_in <= t_out) & (t_in > 0.05) & (t_in < zb)
        if not hit.any():
            return
        # Work on the hit pixels only from here on.
        t = t_in[hit]
        axis = np.where(near_axis[0][hit] == t, 0, np.where(near_axis[1][hit] == t, 1, 2))
        dl = [dd[hit] for dd in dirs]
        positive = np.where(axis == 0, dl[0], np.where(axis == 1, dl[1], dl[2])) > 0
        face = axis * 2 + positive  # entering face: 0 +x (front), 1 -x (rear), 2 +y, 3 -y, 4 +z (top), 5 -z
        normals = np.array([[c, s, 0], [-c, -s, 0], [-s, c, 0], [s, -c, 0], [0, 0, 1], [0, 0, -1]], dtype=np.float64)
        shade = (0.58 + 0.42 * np.maximum(normals @ sun, 0.0)).astype(np.float32)
        hp = [np.float32(ol) + t * dd for ol, dd in zip(origin_local, dl)]  # hit points, box frame
        color = np.empty((t.size, 3), dtype=np.float32)
        color[:] = box.color
        keep = None
        if box.kind == "cabin":
            color[face < 4] = GLASS
        elif box.kind == "body":
            self._brake_lights(box, face, hp, color)
        elif box.kind == "sign":
            rgb, alpha = sign_texture(box.sign_kph)
            size = rgb.shape[0]
            front = face == 1  # the face that looks at approaching traffic
            col = ((box.half[1] - hp[1]) * (size / (2 * box.half[1]))).astype(np.intp).clip(0, size - 1)
            row = ((box.half[2] - hp[2]) * (size / (2 * box.half[2]))).astype(np.intp).clip(0, size - 1)
            color[front] = rgb[row[front], col[front]]
            keep = ~front | alpha[row, col]  # round sign: the plate's corners are transparent
        color *= shade[face][:, None]
        fog = (1.0 - np.exp(-t * np.float32(1.0 / FOG)))[:, None]
        color += (HAZE - color) * fog
        color += 0.5
        pix = color.astype(np.uint8)
        if keep is not None:
            sel = np.nonzero(hit)
            sel = (sel[0][keep], sel[1][keep])
            pix, t = pix[keep], t[keep]
        else:
            sel = hit
        img[v0:v1, u0:u1][sel] = pix
        zb[sel] = t

    @staticmethod
    def _brake_lights(box: Box, face: np.ndarray, hp: list[np.ndarray], color: np.ndarray) -> None:
        rear = face == 1
        ay = np.abs(hp[1]) / box.half[1]
        z = hp[2] / box.half[2]
        lamp = rear & (ay > 0.55) & (ay < 0.92) & (z > 0.2) & (z < 0.7)
        color[lamp] = (255, 40, 35) if box.braking else (120, 22, 22)
        plate = rear & (ay < 0.22) & (z > -0.55) & (z < -0.15)
        color[plate] = (230, 230, 225)
