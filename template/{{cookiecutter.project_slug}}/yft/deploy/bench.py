"""End-to-end inference speed per backend and batch size: letterboxing, the model, and decoding
plus NMS, on real images; latency p50/p95 per batch, throughput, and peak memory.

Peak memory: on CUDA, torch's peak allocated memory during the runs; on CPU, how far the
process's resident memory rose above its level before the runs (warm-up included, sampled every
2 ms): the activations and workspace of that backend at that batch size, not the weights loaded
before. Allocators keep memory, so a row run after a larger one of the same backend reads low.
"""

import threading
import time

import numpy as np

from yft.inference import letterbox
from yft.io import write_json


class PeakRss:
    """Context manager: the peak rise of resident memory (bytes) while it is open."""

    def __init__(self, interval=0.002):
        import psutil

        self.process, self.interval = psutil.Process(), interval
        self.peak = 0

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss - self.start)
            self._stop.wait(self.interval)

    def __enter__(self):
        self.start = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss - self.start)


def bench_images(exp, count=32):
    """Up to `count` validation (else train, else synthetic) images as BGR arrays."""
    import cv2

    from yft.data.coco_io import image_dir
    from yft.io import list_images

    for split in ("val", "train"):
        folder = image_dir(exp, split)
        files = list_images(folder, recursive=False)
        images = [img for img in (cv2.imread(str(p)) for p in files[:count]) if img is not None]
        if images:
            return images
    rng = np.random.default_rng(0)
    h, w = exp.test_size
    return [rng.integers(0, 255, (h * 3 // 4, w, 3), dtype=np.uint8) for _ in range(count)]


def run_batch(backend, exp, images):
    """One end-to-end batch: preprocess, run, decode + NMS. Returns the detections."""
    prepared = [letterbox(img, exp.test_size) for img in images]
    batch = np.stack([p[0] for p in prepared])
    return backend.detect(batch, [p[1] for p in prepared], exp.predict_conf, exp.nmsthre)


def measure(
    backend, exp, images, batch_size, min_time=1.0, min_iters=5, max_iters=200, warmup=2, device=None
):
    """Latency statistics of end-to-end batches of `batch_size` images."""
    import torch

    batch = [images[i % len(images)] for i in range(batch_size)]
    cuda = device is not None and device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    with PeakRss() as rss:  # warm-up included: first runs allocate the workspace
        for _ in range(warmup):
            run_batch(backend, exp, batch)
        start = time.perf_counter()
        while len(times) < max_iters and (len(times) < min_iters or time.perf_counter() - start < min_time):
            t0 = time.perf_counter()
            run_batch(backend, exp, batch)
            if cuda:
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - t0)
    ms = np.array(times) * 1000
    peak = torch.cuda.max_memory_allocated(device) if cuda else rss.peak
    return {
        "backend": backend.name,
        "batch_size": batch_size,
        "iterations": len(times),
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p95_ms": round(float(np.percentile(ms, 95)), 3),
        "images_per_s": round(batch_size * len(times) / (ms.sum() / 1000), 2),
        "peak_mem_mb": round(peak / 2**20, 1),
        "peak_mem_kind": "cuda allocated" if cuda else "rss rise",
    }


def benchmark(backends, exp, batch_sizes, images=None, device=None, **kwargs):
    """Rows of `measure` for every backend and batch size, plus the speed ratio of each backend
    to torch at the same batch size (p50 latency, same run)."""
    images = images if images is not None else bench_images(exp)
    rows = [
        measure(backend, exp, images, bs, device=device, **kwargs)
        for backend in backends
        for bs in batch_sizes
    ]
    torch_p50 = {r["batch_size"]: r["p50_ms"] for r in rows if r["backend"] == "torch"}
    for row in rows:
        base = torch_p50.get(row["batch_size"])
        row["speedup_vs_torch"] = round(base / row["p50_ms"], 2) if base and row["p50_ms"] else None
    return rows


def format_table(rows, skipped=()):
    lines = [
        f"{'backend':<8} {'batch':>5} {'p50 ms':>9} {'p95 ms':>9} {'img/s':>9} {'peak MB':>8} {'vs torch':>8}"
    ]
    for r in rows:
        ratio = f"{r['speedup_vs_torch']:.2f}x" if r["speedup_vs_torch"] else "-"
        lines.append(
            f"{r['backend']:<8} {r['batch_size']:>5} {r['p50_ms']:>9.2f} {r['p95_ms']:>9.2f} "
            f"{r['images_per_s']:>9.1f} {r['peak_mem_mb']:>8.1f} {ratio:>8}"
        )
    lines += [f"{name:<8} skipped: {reason}" for name, reason in skipped]
    return "\n".join(lines)


def write_report(path, rows, skipped, context):
    write_json(
        path,
        {"schema": 1, **context, "rows": rows, "skipped": [{"backend": n, "reason": r} for n, r in skipped]},
        indent=2,
    )
    return path
