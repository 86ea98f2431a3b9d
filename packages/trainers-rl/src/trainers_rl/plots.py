"""Learning curves as PNG, from the Monitor logs SB3 writes during training."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from stable_baselines3.common.monitor import load_results

from trainyard_core.io import atomic_write_bytes

__all__ = ["plot_learning_curve"]


def plot_learning_curve(monitor_dir: Path, path: Path, title: str, window: int = 20) -> Path:
    """Plot episode return against environment steps, with a moving average."""
    frame = load_results(str(monitor_dir)).sort_values("t")
    steps = np.cumsum(frame["l"].to_numpy())
    returns = frame["r"].to_numpy()
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    ax.plot(steps, returns, alpha=0.3, label="episode return")
    if len(returns) >= window:
        smooth = np.convolve(returns, np.ones(window) / window, mode="valid")
        ax.plot(steps[window - 1:], smooth, label=f"mean of {window}")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return atomic_write_bytes(path, buffer.getvalue())
