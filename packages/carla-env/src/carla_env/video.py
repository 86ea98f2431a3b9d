"""Episode videos: GIF (Pillow) or MP4 (ffmpeg through imageio), written atomically."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import numpy as np

from trainyard_core.io import atomic_path

__all__ = ["record_episode", "write_video"]


def write_video(frames: Sequence[np.ndarray], path: str | Path, fps: int = 10) -> Path:
    """Write RGB frames (H, W, 3 uint8) as ``.gif`` or ``.mp4``, chosen by the suffix."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".gif", ".mp4"):
        raise ValueError(f"video path {str(path)!r} must end in .gif or .mp4")
    if not frames:
        raise ValueError("no frames to write")
    stack = np.stack([np.asarray(f, dtype=np.uint8) for f in frames])
    if stack.ndim != 4 or stack.shape[-1] != 3:
        raise ValueError(f"frames must be (H, W, 3) uint8 images, got {stack.shape[1:]}")
    with atomic_path(path) as tmp:
        if suffix == ".gif":
            iio.imwrite(tmp, stack, extension=".gif", duration=1000 / fps, loop=0)
        else:
            iio.imwrite(tmp, stack, extension=".mp4", fps=fps, codec="libx264", macro_block_size=1)
    return path


def record_episode(env: Any,
                   policy: Callable[[Any], np.ndarray],
                   path: str | Path,
                   seed: int | None = None,
                   max_steps: int = 1000) -> dict[str, Any]:
    """Run one episode of a ``render_mode="rgb_array"`` env, save it, return its last info."""
    obs, _ = env.reset(seed=seed)
    frames = [env.render()]
    info: dict[str, Any] = {}
    for _ in range(max_steps):
        obs, _, terminated, truncated, info = env.step(policy(obs))
        frames.append(env.render())
        if terminated or truncated:
            break
    write_video(frames, path, fps=env.metadata.get("render_fps", 10))
    return info
