"""Extra training-time data features on top of YOLOX's COCODataset: an image cache keyed by
input size, and copy-paste augmentation for small objects (YOLOX has none).

`TrainSource` wraps the dataset that MosaicDetection draws from, so pasted objects then go
through mosaic, mixup, affine, HSV and flips like every other object.
"""

import random
from pathlib import Path

import numpy as np

from yft.io import atomic_path
from yft.project import UserError


class TrainSource:
    """A COCODataset look-alike whose pull_item adds caching and copy-paste.

    cache: None, "ram" (each loader worker keeps the resized images it has read) or "disk"
    (resized images as .npy under <data_dir>/.cache/<split>_<h>x<w>/, so a new input size
    never reuses a stale cache — YOLOX's own cache file ignores the input size).
    copy_paste_prob: chance per image to receive up to copy_paste_max objects from another
    image, each smaller than copy_paste_max_area (fraction of the image area), placed where
    they overlap no existing box.
    """

    def __init__(self, dataset, cache=None, copy_paste_prob=0.0, copy_paste_max=3, copy_paste_max_area=0.05):
        if cache not in (None, "ram", "disk"):
            raise ValueError(f"cache must be None, 'ram' or 'disk', not {cache!r}")
        self.dataset, self.cache, self._ram = dataset, cache, {}
        self.copy_paste_prob, self.copy_paste_max = copy_paste_prob, copy_paste_max
        self.copy_paste_max_area = copy_paste_max_area
        h, w = dataset.img_size
        self.cache_dir = Path(dataset.data_dir) / ".cache" / f"{dataset.name}_{h}x{w}"

    def __getattr__(self, name):  # everything else (annotations, ids, input_dim ...) as the dataset
        return getattr(self.dataset, name)

    def __len__(self):
        return len(self.dataset)

    def load_anno(self, index):
        return self.dataset.load_anno(index)

    def _decode(self, index):
        """YOLOX's resized image; a file that no longer decodes (changed after the pre-training
        check) stops training with its name, not YOLOX's "file named ... not found"."""
        import cv2

        try:
            return self.dataset.load_resized_img(index)
        except (AssertionError, cv2.error) as err:
            path = Path(self.dataset.data_dir) / self.dataset.name / self.dataset.annotations[index][3]
            reason = "empty, missing or not an image" if isinstance(err, AssertionError) else str(err).strip()
            raise UserError(
                f"{path}: does not decode ({reason}), changed since the pre-run check; restore or "
                "remove it (`invoke validate` checks every image), then `invoke train --resume` "
                "continues from the last checkpoint"
            ) from None

    def resized_image(self, index):
        if self.cache == "ram":
            if index not in self._ram:
                self._ram[index] = self._decode(index)
            return self._ram[index]
        if self.cache == "disk":
            path = self.cache_dir / f"{index}.npy"
            if path.is_file():
                return np.load(path)
            img = self._decode(index)
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:  # keeps .npy, so np.save adds no second suffix
                np.save(tmp, img)
            return img
        return self._decode(index)

    def pull_item(self, index):
        res, img_info, _, _ = self.dataset.annotations[index]
        img, res = self.resized_image(index).copy(), res.copy()
        if self.copy_paste_prob and random.random() < self.copy_paste_prob:
            img, res = self.paste_objects(img, res)
        return img, res, img_info, np.array([self.dataset.ids[index]])

    def paste_objects(self, img, res):
        donor = random.randrange(len(self.dataset))
        donor_res = self.dataset.annotations[donor][0]
        limit = self.copy_paste_max_area * img.shape[0] * img.shape[1]
        small = [box for box in donor_res if 1 < (box[2] - box[0]) * (box[3] - box[1]) <= limit]
        if not small:
            return img, res
        donor_img = self.resized_image(donor)
        random.shuffle(small)
        added = []
        for x1, y1, x2, y2, cls in small[: self.copy_paste_max]:
            x1, y1, x2, y2 = int(x1), int(y1), int(np.ceil(x2)), int(np.ceil(y2))
            patch = donor_img[y1:y2, x1:x2]
            ph, pw = patch.shape[:2]
            if ph < 2 or pw < 2 or ph >= img.shape[0] or pw >= img.shape[1]:
                continue
            for _ in range(10):  # a few tries to find free space
                nx, ny = random.randrange(img.shape[1] - pw), random.randrange(img.shape[0] - ph)
                box = np.array([nx, ny, nx + pw, ny + ph], dtype=float)
                if not _overlaps(box, [r[:4] for r in res] + added):
                    img[ny : ny + ph, nx : nx + pw] = patch
                    added.append(box)
                    res = np.vstack([res, [*box, cls]]) if len(res) else np.array([[*box, cls]])
                    break
        return img, res


def _overlaps(box, boxes):
    for other in boxes:
        ix = min(box[2], other[2]) - max(box[0], other[0])
        iy = min(box[3], other[3]) - max(box[1], other[1])
        if ix > 0 and iy > 0:
            return True
    return False
