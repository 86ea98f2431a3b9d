"""Bird's-eye rasters of the embedded worlds: road, lane markings, cars, route, signals.

The camera is ego-centred and ego-aligned: the ego sits near the bottom facing up; each image
row is a distance ahead, each column a lateral offset. Rows are mapped to the route at the
ego's progress plus that distance, which draws curves as they are while keeping the whole
batch one set of array operations (cars are painted with one matrix product).
"""

from __future__ import annotations

import numpy as np

from carla_env.sim.world import World

__all__ = ["render_bev"]

AHEAD, BEHIND, HALF_WIDTH = 24.0, 8.0, 16.0
# Pixel classes, painted as small integers and coloured once at the end.
OFF_ROAD, ROAD, MARKING, ROUTE, CAR, EGO, RED, RAIN = range(8)
PALETTE = np.array(
    [
        [46, 66, 46],  # off road
        [92, 92, 96],  # road
        [225, 225, 225],  # lane marking
        [60, 110, 170],  # the ego's lane
        [210, 50, 50],  # other cars
        [40, 210, 70],  # ego
        [255, 0, 0],  # red light at the stop line
        [150, 160, 190],  # rain streak
    ],
    np.float32)


def _palette(light: float, rain: bool) -> np.ndarray:
    """RGB per pixel class under this light and weather."""
    palette = PALETTE * (0.85 if rain else 1.0)
    if rain:
        palette[:, 2] += 20.0
    return np.clip(palette * light, 0, 255).astype(np.uint8)


def render_bev(world: World,
               height: int,
               width: int,
               light: float = 1.0,
               rain: bool = False) -> np.ndarray:
    """Frames (N, height, width, 3) uint8 for every world."""
    w, lanes = world.lane_width, world.lanes
    f32 = np.float32
    ahead = (AHEAD - (np.arange(height) + 0.5) * (AHEAD + BEHIND) / height).astype(f32)
    lateral = (HALF_WIDTH - (np.arange(width) + 0.5) * 2 * HALF_WIDTH / width).astype(f32)
    rs = world.s[:, None] + ahead[None, :]
    cx, cy, heading, _ = world.routes.frame(world.route[:, None], rs)
    cos_y, sin_y = np.cos(world.yaw)[:, None], np.sin(world.yaw)[:, None]
    # Lane 0's centre in the ego frame, per row, and the road's angle to the ego.
    lane0 = (-sin_y * (cx - world.x[:, None]) + cos_y * (cy - world.y[:, None])).astype(f32)
    slant = np.maximum(np.cos(heading - world.yaw[:, None]), 0.3).astype(f32)
    # q: position across the road in lanes; lane i spans [i, i + 1).
    q = (lateral[None, None, :] - lane0[:, :, None]) * (slant / f32(w))[:, :, None]
    q += f32(0.5)
    road = (q >= 0) & (q < lanes)
    boundary = np.rint(q)
    near_line = np.abs(q - boundary) < f32(0.18 / w)
    edge = (boundary == 0) | (boundary == lanes)
    dashes = (np.mod(rs, 6.0) < 3.0)[:, :, None]
    marking = near_line & (edge | (dashes & road))
    route = np.abs(q - (world.lane + 0.5).astype(f32)[:, None, None]) < f32(0.25 / w)
    codes = road.view(np.uint8)  # OFF_ROAD 0, ROAD 1
    np.copyto(codes, np.uint8(ROUTE), where=route & road)
    np.copyto(codes, np.uint8(MARKING), where=marking)
    if world.p.cross_vehicles:
        gap, state = world.next_signal()
        stop_row = np.abs(ahead[None, :] - gap[:, None]) < 0.5 * (AHEAD + BEHIND) / height
        np.copyto(codes, np.uint8(RED), where=(stop_row & (state[:, None] == 2))[:, :, None] & road)
    np.copyto(codes, np.uint8(CAR), where=_car_mask(world, ahead, lateral))
    ego = (np.abs(ahead) < world.p.ego.length / 2)[:, None] & (np.abs(lateral)
                                                               < world.p.ego.width / 2)[None, :]
    codes[:, ego] = EGO
    if rain:
        streaks = np.add.outer(np.arange(height) * 3, np.arange(width)) % 11 == 0
        codes[:, streaks] = RAIN
    # np.take along the palette's first axis is the fastest way to colour here.
    return np.take(_palette(light, rain), codes, axis=0)


def _car_mask(world: World, ahead: np.ndarray, lateral: np.ndarray) -> np.ndarray:
    """(N, H, W) pixels covered by other cars, painted with one batched matrix product."""
    x, y, heading, _, length, width, active = world.traffic_world()
    dx, dy = x - world.x[:, None], y - world.y[:, None]
    cos_y, sin_y = np.cos(world.yaw)[:, None], np.sin(world.yaw)[:, None]
    fwd = cos_y * dx + sin_y * dy
    left = -sin_y * dx + cos_y * dy
    # Cars across the ego's direction are drawn with length and width swapped.
    across = np.abs(np.cos(heading - world.yaw[:, None])) < 0.7
    along_len = np.where(across, width, length)
    side_len = np.where(across, length, width)
    rows = np.abs(ahead[None, None, :] - fwd[..., None]) < along_len[..., None] / 2
    cols = np.abs(lateral[None, None, :] - left[..., None]) < side_len[..., None] / 2
    rows &= active[..., None]
    return np.matmul(rows.astype(np.float32).transpose(0, 2, 1), cols.astype(np.float32)) > 0
