"""PNG figures for evaluation reports (matplotlib without a display, OpenCV for image sheets).

Every figure is rendered in memory and written atomically.
"""

import cv2
import numpy as np

from yft.io import write_figure

GT_COLOR, TP_COLOR, FP_COLOR, FN_COLOR = (60, 200, 60), (230, 150, 30), (40, 40, 230), (0, 165, 255)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def confusion_png(matrix, labels, path):
    """Counts, coloured by share of the true class (row); rows true, columns predicted."""
    plt = _pyplot()
    matrix = np.asarray(matrix)
    n = len(labels)
    fig, ax = plt.subplots(figsize=(max(4, 0.55 * n + 2), max(3.5, 0.5 * n + 1.5)))
    rows = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros(matrix.shape), where=rows > 0)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if matrix[i, j]:
                    ax.text(
                        j,
                        i,
                        str(matrix[i, j]),
                        ha="center",
                        va="center",
                        fontsize=8,
                        color="white" if share[i, j] > 0.6 else "black",
                    )
    ax.set_xticks(range(n), labels, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(n), labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion matrix (IoU 0.5)")
    return write_figure(path, fig)


def pr_curves_png(curves, path, max_classes=24):
    """curves: [(class name, recall (R,), precision at IoU .5 (R,), at .75 (R,), AP50)]."""
    plt = _pyplot()
    curves = curves[:max_classes]
    cols = min(4, max(1, len(curves)))
    rows = max(1, -(-len(curves) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (name, recall, p50, p75, ap50) in zip(axes.flat, curves):
        ax.axis("on")
        ax.plot(recall, p50, label="IoU 0.50")
        ax.plot(recall, p75, label="IoU 0.75", linestyle="--")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_title(f"{name[:24]} (AP50 {ap50:.2f})", fontsize=9)
        ax.set_xlabel("recall", fontsize=8)
        ax.set_ylabel("precision", fontsize=8)
        ax.tick_params(labelsize=7)
    axes.flat[0].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return write_figure(path, fig)


def bar_png(labels, series, path, title, ylabel):
    """Grouped bars: series {name: [value per label]}."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(5, 0.6 * len(labels) * max(1, len(series)) + 2), 3.5))
    width = 0.8 / max(1, len(series))
    for i, (name, values) in enumerate(series.items()):
        x = np.arange(len(labels)) + i * width
        ax.bar(x, [0 if v is None else v for v in values], width, label=name)
    ax.set_xticks(np.arange(len(labels)) + 0.4 - width / 2, labels, rotation=45, ha="right", fontsize=8)
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    if len(series) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return write_figure(path, fig)


def line_png(x_label, curves, path, title, ylabel):
    """Lines: curves {name: (x values, y values)}."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for name, (xs, ys) in curves.items():
        ax.plot(xs, ys, marker="o", label=name)
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_xlabel(x_label)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return write_figure(path, fig)


def fit_tile(img, size):
    """Scale an image into a size x size tile (grey padding); returns (tile, scale, dx, dy)."""
    h, w = img.shape[:2]
    scale = size / max(h, w)
    resized = cv2.resize(img, (max(1, round(w * scale)), max(1, round(h * scale))))
    tile = np.full((size, size, 3), 114, np.uint8)
    dy, dx = (size - resized.shape[0]) // 2, (size - resized.shape[1]) // 2
    tile[dy : dy + resized.shape[0], dx : dx + resized.shape[1]] = resized
    return tile, scale, dx, dy


def draw_box(tile, box_xyxy, scale, dx, dy, color, label=None, thickness=1):
    x1, y1, x2, y2 = (int(round(v * scale)) for v in box_xyxy)
    cv2.rectangle(tile, (x1 + dx, y1 + dy), (x2 + dx, y2 + dy), color, thickness)
    if label:
        cv2.putText(
            tile,
            label,
            (x1 + dx, max(10, y1 + dy - 2)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.35,
            color,
            1,
            cv2.LINE_AA,
        )


def caption(tile, text):
    cv2.rectangle(tile, (0, tile.shape[0] - 14), (tile.shape[1], tile.shape[0]), (0, 0, 0), -1)
    cv2.putText(
        tile,
        text[:48],
        (3, tile.shape[0] - 4),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.35,
        (255, 255, 255),
        1,
        cv2.LINE_AA,
    )
    return tile


def contact_sheet(tiles, columns=4):
    """Tiles (same size) into one image, row by row."""
    if not tiles:
        return np.full((64, 256, 3), 255, np.uint8)
    size = tiles[0].shape[0]
    rows = -(-len(tiles) // columns)
    sheet = np.full((rows * size, min(columns, len(tiles)) * size, 3), 255, np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        sheet[r * size : (r + 1) * size, c * size : (c + 1) * size] = tile
    return sheet
