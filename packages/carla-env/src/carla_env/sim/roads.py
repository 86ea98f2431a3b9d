"""Road maps of the embedded simulator: routes sampled as dense polylines with lanes.

A map description (``MapSpec``) generates a table of routes. Each route is a reference
polyline sampled every ``ds`` metres (the centre of lane 0, the rightmost lane); lane ``i``
runs parallel at lateral offset ``i * lane_width`` to the left. Everything downstream works
in route (Frenet) coordinates ``(s, d)``, which is what lets one vectorised step serve
thousands of environments: a position is an index into shared arrays, not a graph search.

Three kinds of map:

- ``highway``: long multi-lane road of straights and gentle arcs;
- ``ring``: a closed loop (stadium shape); ``s`` wraps around;
- ``urban``: a route through a grid of streets, turning at signalised intersections whose
  cross streets carry their own traffic.
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["MAP_KINDS", "MapSpec", "RouteTable", "build_routes"]

MAP_KINDS = ("highway", "ring", "urban")


@dataclasses.dataclass(frozen=True)
class MapSpec:
    """A small description from which a family of routes is generated."""

    kind: str = "highway"
    lanes: int = 3
    lane_width: float = 3.75
    route_length: float = 800.0
    speed_limit: float = 30.0
    block_length: float = 80.0  # urban: distance between intersections
    turn_radius: float = 10.0  # urban: radius of lane 0 through a turn
    num_routes: int = 64
    seed: int = 0
    ds: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in MAP_KINDS:
            raise ValueError(f"map kind must be one of {', '.join(MAP_KINDS)}, got {self.kind!r}")
        if self.lanes < 1 or self.lane_width <= 0 or self.route_length <= 0 or self.ds <= 0:
            raise ValueError("map lanes, lane_width, route_length and ds must be positive")


@dataclasses.dataclass
class RouteTable:
    """Every route of a map as padded arrays (R routes, P points)."""

    spec: MapSpec
    xy: np.ndarray  # (R, P, 2) reference line
    heading: np.ndarray  # (R, P)
    curvature: np.ndarray  # (R, P)
    length: np.ndarray  # (R,) usable length of each route
    closed: bool
    # Signalised intersections along each route, padded with +inf: (R, I)
    junction_s: np.ndarray
    junction_xy: np.ndarray  # (R, I, 2) centre of the crossing
    junction_dir: np.ndarray  # (R, I, 2) unit direction of the cross street
    junction_straight: np.ndarray  # (R, I) the route goes straight through (bool)

    @property
    def num_routes(self) -> int:
        return int(self.xy.shape[0])

    @property
    def num_points(self) -> int:
        return int(self.xy.shape[1])

    def __post_init__(self) -> None:
        # Flat copies: one integer index per lookup is much cheaper than 2-D fancy indexing.
        self._x = np.ascontiguousarray(self.xy[..., 0]).ravel()
        self._y = np.ascontiguousarray(self.xy[..., 1]).ravel()
        self._h = self.heading.ravel()
        self._k = self.curvature.ravel()
        self._cos, self._sin = np.cos(self._h), np.sin(self._h)

    def _flat(self, route: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Flat index of the point before ``s`` and the fraction to the next point."""
        if self.closed:
            s = np.mod(s, self.length[route])
        pos = np.clip(s * (1.0 / self.spec.ds), 0.0, self.num_points - 1.001)
        i = pos.astype(np.int64)
        return route * self.num_points + i, pos - i

    def curvature_at(self, route: np.ndarray, s: np.ndarray) -> np.ndarray:
        """Curvature of the reference line at ``s``."""
        flat, _ = self._flat(route, s)
        return self._k[flat]

    def frame(self, route: np.ndarray,
              s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Reference point x, y, heading and curvature at ``s`` (linear interpolation)."""
        flat, f = self._flat(route, s)
        x0, y0, h0 = self._x[flat], self._y[flat], self._h[flat]
        x = x0 + (self._x[flat + 1] - x0) * f
        y = y0 + (self._y[flat + 1] - y0) * f
        dh = self._h[flat + 1] - h0
        heading = h0 + ((dh + np.pi) % (2 * np.pi) - np.pi) * f
        return x, y, heading, self._k[flat]

    def to_world(self, route: np.ndarray, s: np.ndarray,
                 d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World x, y and heading of Frenet point ``(s, d)``."""
        flat, f = self._flat(route, s)
        x0, y0, h0 = self._x[flat], self._y[flat], self._h[flat]
        nxt = flat + 1
        # Interpolated unit tangent: at 1 m spacing it is unit length to within 1e-5.
        c = self._cos[flat] + (self._cos[nxt] - self._cos[flat]) * f
        si = self._sin[flat] + (self._sin[nxt] - self._sin[flat]) * f
        dh = self._h[nxt] - h0
        heading = h0 + ((dh + np.pi) % (2 * np.pi) - np.pi) * f
        return (x0 + (self._x[nxt] - x0) * f - d * si, y0 + (self._y[nxt] - y0) * f + d * c,
                heading)


class _Builder:
    """Appends straights and arcs to a polyline sampled every ``ds`` metres."""

    def __init__(self, ds: float, heading: float = 0.0) -> None:
        self.ds = ds
        self.points = [(0.0, 0.0)]
        self.headings = [heading]
        self.curvatures = [0.0]

    @property
    def length(self) -> float:
        return (len(self.points) - 1) * self.ds

    def extend(self, length: float, curvature: float = 0.0) -> None:
        x, y = self.points[-1]
        h = self.headings[-1]
        for _ in range(max(1, round(length / self.ds))):
            if curvature == 0.0:
                x, y = x + self.ds * np.cos(h), y + self.ds * np.sin(h)
            else:
                dh = self.ds * curvature
                r = 1.0 / curvature
                x, y = (x + r * (np.sin(h + dh) - np.sin(h)), y - r * (np.cos(h + dh) - np.cos(h)))
                h = h + dh
            self.points.append((x, y))
            self.headings.append(h)
            self.curvatures.append(curvature)


def _highway(spec: MapSpec, rng: np.random.Generator) -> tuple[_Builder, list[float]]:
    b = _Builder(spec.ds, heading=float(rng.uniform(-np.pi, np.pi)))
    b.extend(float(rng.uniform(60, 150)))
    while b.length < spec.route_length + 200:
        radius = float(rng.uniform(250, 900))
        angle = float(rng.uniform(0.15, 0.5))
        b.extend(radius * angle, curvature=float(rng.choice([-1, 1])) / radius)
        b.extend(float(rng.uniform(80, 300)))
    return b, []


def _ring(spec: MapSpec, rng: np.random.Generator) -> tuple[_Builder, list[float]]:
    straight = float(rng.uniform(80, 200))
    radius = float(rng.uniform(40, 90))
    b = _Builder(spec.ds, heading=float(rng.uniform(-np.pi, np.pi)))
    for _ in range(2):
        b.extend(straight)
        b.extend(np.pi * radius, curvature=1.0 / radius)
    return b, []


def _urban(spec: MapSpec, rng: np.random.Generator) -> tuple[_Builder, list[float]]:
    """Blocks of ``block_length``; at each intersection go straight or turn 90 degrees.

    The route is a self-avoiding walk on the grid's nodes, so it never crosses itself.
    """
    steps = ((1, 0), (0, 1), (-1, 0), (0, -1))  # east, north, west, south
    direction = int(rng.integers(0, 4))
    b = _Builder(spec.ds, heading=direction * np.pi / 2)
    r = spec.turn_radius
    b.extend(spec.block_length / 2)
    node = steps[direction]
    visited = {(0, 0), node}
    junctions = []
    while b.length < spec.route_length + 100:
        options: list[tuple[int, tuple[int, int] | None]] = []
        for turn in (0, 0, 1, -1):  # straight twice as likely as each turn
            nd = (direction + turn) % 4
            candidate = (node[0] + steps[nd][0], node[1] + steps[nd][1])
            if candidate not in visited:
                options.append((turn, candidate))
        turn, nxt = options[int(rng.integers(len(options)))] if options else (0, None)
        if turn == 0:
            junctions.append(b.length + r)
            b.extend(2 * r)
        else:
            # A quarter circle replaces r of approach and r of exit; its middle is the junction.
            junctions.append(b.length + np.pi * r / 4)
            b.extend(np.pi * r / 2, curvature=turn / r)
        b.extend(spec.block_length - 2 * r)
        direction = (direction + turn) % 4
        node = nxt if nxt is not None else (node[0] + steps[direction][0],
                                            node[1] + steps[direction][1])
        visited.add(node)
    return b, junctions


_GENERATORS = {"highway": _highway, "ring": _ring, "urban": _urban}


def build_routes(spec: MapSpec) -> RouteTable:
    """Generate ``spec.num_routes`` routes deterministically from ``spec.seed``."""
    rng = np.random.default_rng(spec.seed)
    built = [_GENERATORS[spec.kind](spec, rng) for _ in range(spec.num_routes)]
    closed = spec.kind == "ring"
    num_points = max(len(b.points) for b, _ in built)
    num_junctions = max([len(j) for _, j in built] + [1])
    shape = (spec.num_routes, num_points)
    xy = np.zeros((*shape, 2))
    heading = np.zeros(shape)
    curvature = np.zeros(shape)
    length = np.zeros(spec.num_routes)
    junction_s = np.full((spec.num_routes, num_junctions), np.inf)
    junction_xy = np.zeros((spec.num_routes, num_junctions, 2))
    junction_dir = np.zeros((spec.num_routes, num_junctions, 2))
    junction_straight = np.zeros((spec.num_routes, num_junctions), dtype=bool)
    for r, (b, junctions) in enumerate(built):
        n = len(b.points)
        xy[r, :n] = b.points
        heading[r, :n] = b.headings
        curvature[r, :n] = b.curvatures
        # Padding continues straight so look-ahead past the end stays defined.
        if n < num_points:
            extra = np.arange(1, num_points - n + 1) * spec.ds
            xy[r,
               n:] = xy[r,
                        n - 1] + extra[:, None] * [np.cos(b.headings[-1]),
                                                   np.sin(b.headings[-1])]
            heading[r, n:] = b.headings[-1]
        length[r] = b.length if closed else min(b.length, spec.route_length)
        for k, s in enumerate(j for j in junctions if j < length[r]):
            i = round(s / spec.ds)
            junction_s[r, k] = s
            # The cross street runs through the junction, perpendicular to the approach.
            approach = b.headings[max(0, i - round(np.pi * spec.turn_radius / 4 / spec.ds))]
            junction_xy[r, k] = b.points[i]
            junction_dir[r, k] = [-np.sin(approach), np.cos(approach)]
            junction_straight[r, k] = b.curvatures[i] == 0.0
    return RouteTable(spec, xy, heading, curvature, length, closed, junction_s, junction_xy,
                      junction_dir, junction_straight)
