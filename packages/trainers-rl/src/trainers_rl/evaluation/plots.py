"""Learning curves as PNG, from the Monitor logs SB3 writes during training."""

from __future__ import annotations

import io
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from stable_baselines3.common.monitor import load_results

from trainyard_core.io import atomic_write_bytes

__all__ = ["plot_learning_curve", "plot_training"]


def _returns(ax: plt.Axes, monitor_dir: Path, title: str, window: int) -> None:
    frame = load_results(str(monitor_dir)).sort_values("t")
    steps = np.cumsum(frame["l"].to_numpy())
    returns = frame["r"].to_numpy()
    ax.plot(steps, returns, alpha=0.3, label="episode return")
    if len(returns) >= window:
        smooth = np.convolve(returns, np.ones(window) / window, mode="valid")
        ax.plot(steps[window - 1:], smooth, label=f"mean of {window}")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return atomic_write_bytes(path, buffer.getvalue())


def plot_learning_curve(monitor_dir: Path, path: Path, title: str, window: int = 20) -> Path:
    """Plot episode return against environment steps, with a moving average."""
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    _returns(ax, monitor_dir, title, window)
    return _save(fig, path)


def plot_training(monitor_dir: Path,
                  eval_history: Path | None,
                  path: Path,
                  title: str,
                  window: int = 20) -> Path:
    """Training returns, and beside them the evaluations made during training."""
    if eval_history is None:
        return plot_learning_curve(monitor_dir, path, title, window)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4), dpi=100)
    _returns(left, monitor_dir, title, window)
    rows = [json.loads(line) for line in eval_history.read_text().splitlines() if line]
    steps = [r["step"] for r in rows]
    for key, label in (("route_completion", "route completion"), ("collision_free",
                                                                  "collision-free episodes")):
        if rows and key in rows[0]:
            right.plot(steps, [r[key] for r in rows], marker="o", label=label)
    right.set_ylim(-0.02, 1.02)
    right.set_xlabel("environment steps")
    right.set_ylabel("fraction of validation episodes")
    right.set_title("closed-loop validation")
    right.grid(alpha=0.3)
    right.legend(loc="lower right")
    return _save(fig, path)
