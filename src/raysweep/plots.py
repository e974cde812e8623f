"""Figures drawn both by a trial (logged as its artifacts) and by the report: one drawing each.

A lower layer than trainables and analysis, so that neither imports the other to share a plot.
"""

from __future__ import annotations

import numpy as np


def confusion_figure(cm: np.ndarray, classes: tuple[str, ...], acc: float):  # -> matplotlib Figure
    """A labelled confusion-matrix heat map (matplotlib Figure, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 6))
    im = ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"confusion matrix (test accuracy {acc:.2%})")
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if cm[i, j] > cm.max() / 2 else "black")  # fmt: skip
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    plt.close(fig)
    return fig
