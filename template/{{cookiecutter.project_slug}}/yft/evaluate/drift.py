"""`invoke drift`: are new images still like the training images?

Two views of each image:
  statistics  brightness, contrast, saturation, sharpness (variance of the Laplacian),
              colour means, width, height, aspect ratio; each compared with a two-sample
              Kolmogorov-Smirnov test (Bonferroni-corrected over the statistics)
  embeddings  the model's own backbone features (global average of the three FPN outputs),
              compared with a kernel two-sample test: squared MMD with an RBF kernel
              (median-distance bandwidth) and a permutation test
drift_score = MMD^2 of the embeddings; threshold = the 95th percentile of MMD^2 under
permutations (no drift), so drift is flagged when the score exceeds it (p < 0.05).
Each new image also gets an atypicality: its mean distance to the 5 nearest training
embeddings divided by the training images' own typical (median) such distance; the most
atypical images are listed and drawn.
"""

from pathlib import Path

import cv2
import numpy as np
import torch

from yft.data.coco_io import image_dir
from yft.data.precheck import check_split
from yft.evaluate.mine import list_images, read_images
from yft.inference import letterbox
from yft.io import write_atomic, write_json, write_png
from yft.project import UserError, relative, run_dir
from yft.runs import output_dir

STATS = (
    "brightness",
    "contrast",
    "saturation",
    "sharpness",
    "mean_b",
    "mean_g",
    "mean_r",
    "width",
    "height",
    "aspect",
)


def image_stats(img):
    gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
    b, g, r = img.reshape(-1, 3).mean(axis=0)
    h, w = gray.shape
    return [
        gray.mean(),
        gray.std(),
        hsv[..., 1].mean(),
        cv2.Laplacian(gray, cv2.CV_64F).var(),
        b,
        g,
        r,
        w,
        h,
        w / h,
    ]


@torch.no_grad()
def embed(model, exp, images, device, batch_size=16):
    """Backbone (FPN) features, averaged over space and concatenated: (N, channels)."""
    feats = []
    for start in range(0, len(images), batch_size):
        batch = np.stack([letterbox(img, exp.test_size)[0] for img in images[start : start + batch_size]])
        outs = model.backbone(torch.from_numpy(batch).to(device).float())
        feats.append(torch.cat([o.mean(dim=(2, 3)) for o in outs], dim=1).cpu().numpy())
    return np.concatenate(feats).astype(np.float64)


def _sq_dists(a, b):
    return np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T, 0)


def mmd_test(x, y, permutations=200, seed=0):
    """(MMD^2, p-value, 95th percentile of the permutation null) with an RBF kernel."""
    z = np.concatenate([x, y])
    d = _sq_dists(z, z)
    bandwidth = np.median(d[np.triu_indices(len(z), 1)]) or 1.0
    k = np.exp(-d / bandwidth)
    n = len(x)

    def mmd(idx):
        a, b = idx[:n], idx[n:]
        kxx, kyy, kxy = k[np.ix_(a, a)], k[np.ix_(b, b)], k[np.ix_(a, b)]
        return (
            (kxx.sum() - np.trace(kxx)) / (len(a) * (len(a) - 1))
            + (kyy.sum() - np.trace(kyy)) / (len(b) * (len(b) - 1))
            - 2 * kxy.mean()
        )

    observed = mmd(np.arange(len(z)))
    rng = np.random.default_rng(seed)
    null = np.array([mmd(rng.permutation(len(z))) for _ in range(permutations)])
    p = (1 + np.sum(null >= observed)) / (1 + permutations)
    return float(observed), float(p), float(np.percentile(null, 95))


def atypicality(train, new, k=5):
    """Mean distance to the k nearest training embeddings, over the training set's own median."""
    k = min(k, len(train) - 1)
    d_new = np.sqrt(np.sort(_sq_dists(new, train), axis=1)[:, :k]).mean(axis=1)
    d_train = _sq_dists(train, train)
    np.fill_diagonal(d_train, np.inf)
    ref = np.median(np.sqrt(np.sort(d_train, axis=1)[:, :k]).mean(axis=1))
    return d_new / (ref if ref > 0 else 1.0)


def drift(
    exp,
    device,
    images,
    ckpt=None,
    max_images=500,
    permutations=200,
    seed=0,
    out=None,
    progress=True,
    force=False,
):
    """Compare a folder of new images with the training split; drift.json, drift.md, a sheet."""
    from scipy.stats import ks_2samp

    from yft.evaluate import plots
    from yft.inference import default_checkpoint, load_model

    rng = np.random.default_rng(seed)
    train = check_split(exp, "train")
    train_files = [image_dir(exp, "train") / im["file_name"] for im in train["images"]]
    new_files = list_images(images)
    if len(train_files) < 3 or len(new_files) < 3:
        raise UserError("drift needs at least 3 training images and 3 new images")
    if len(train_files) > max_images:
        train_files = [
            train_files[i] for i in sorted(rng.choice(len(train_files), max_images, replace=False))
        ]
    if len(new_files) > max_images:
        new_files = [new_files[i] for i in sorted(rng.choice(len(new_files), max_images, replace=False))]
    ckpt = Path(ckpt) if ckpt else default_checkpoint(exp)
    model = load_model(exp, ckpt).to(device).eval()
    out = output_dir(run_dir(exp, "drift"), out, force)  # before the embeddings

    def load(files):
        pairs = list(read_images(files))
        return [p for p, _ in pairs], [img for _, img in pairs]

    train_paths, train_imgs = load(train_files)
    new_paths, new_imgs = load(new_files)
    stats_train = np.array([image_stats(i) for i in train_imgs])
    stats_new = np.array([image_stats(i) for i in new_imgs])
    tests = {}
    for j, name in enumerate(STATS):
        res = ks_2samp(stats_train[:, j], stats_new[:, j])
        tests[name] = {
            "train_mean": round(float(stats_train[:, j].mean()), 3),
            "new_mean": round(float(stats_new[:, j].mean()), 3),
            "ks": round(float(res.statistic), 4),
            "p_value": round(float(min(1.0, res.pvalue * len(STATS))), 5),
        }  # Bonferroni
    e_train, e_new = embed(model, exp, train_imgs, device), embed(model, exp, new_imgs, device)
    mean, std = e_train.mean(0), e_train.std(0) + 1e-6
    e_train, e_new = (e_train - mean) / std, (e_new - mean) / std
    score, p, threshold = mmd_test(e_train, e_new, permutations, seed)
    atyp = atypicality(e_train, e_new)
    order = np.argsort(-atyp)
    worst = [{"file": str(new_paths[i]), "atypicality": round(float(atyp[i]), 3)} for i in order[:24]]
    shifted = [n for n, t in tests.items() if t["p_value"] < 0.05]
    result = {
        "checkpoint": relative(ckpt),
        "train_images": len(train_imgs),
        "new_images": len(new_imgs),
        "drift_score": round(score, 6),
        "threshold": round(threshold, 6),
        "p_value": round(p, 4),
        "drift": bool(score > threshold),
        "shifted_statistics": shifted,
        "statistics": tests,
        "most_atypical": worst,
        "verdict": (
            "drift: the new images differ from the training images"
            if score > threshold
            else "no significant drift"
        ),
    }
    tiles = []
    for row in worst[:12]:
        tile, *_ = plots.fit_tile(cv2.imread(row["file"]), 256)
        tiles.append(plots.caption(tile, f"{row['atypicality']:.2f} {Path(row['file']).name}"))
    write_png(out / "most_atypical.png", plots.contact_sheet(tiles))
    write_atomic(out / "drift.md", markdown(result).encode("utf-8"))
    write_json(out / "drift.json", result, indent=2)
    return result, out


def markdown(r):
    lines = [
        f"# Drift: {r['new_images']} new images vs {r['train_images']} training images",
        "",
        f"**{r['verdict']}**: embedding MMD^2 {r['drift_score']:.5f}, threshold {r['threshold']:.5f} "
        f"(95th percentile without drift), p = {r['p_value']}",
        "",
        "| statistic | train mean | new mean | KS | p (Bonferroni) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, t in r["statistics"].items():
        lines.append(f"| {name} | {t['train_mean']} | {t['new_mean']} | {t['ks']} | {t['p_value']} |")
    lines += ["", "Most atypical new images (distance to the nearest training images, 1 = typical):", ""]
    lines += [f"- {row['atypicality']:.2f} `{row['file']}`" for row in r["most_atypical"][:12]]
    lines += ["", "![most atypical](most_atypical.png)", ""]
    return "\n".join(lines)
