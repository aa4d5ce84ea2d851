"""Which training images come next: a resumable endless stream, optionally oversampling rare classes.

Repeat-factor sampling (LVIS): an image whose rarest class appears in a fraction f of the
images is repeated r = max(1, sqrt(t / f)) times per epoch on average (t = exp.repeat_threshold),
so images with rare classes are seen more often, as the finetuning guide's class-imbalance
remedies ask. Negatives and common-class images keep r = 1.
"""

import itertools
import math

import numpy as np
import torch
from torch.utils.data import Sampler


def repeat_factors(class_lists, threshold):
    """Per image repeat factor from its class indices (a list of arrays)."""
    images_with = {}
    for classes in class_lists:
        for c in {int(k) for k in classes}:
            images_with[c] = images_with.get(c, 0) + 1
    n = max(1, len(class_lists))
    per_class = {c: max(1.0, math.sqrt(threshold / (count / n))) for c, count in images_with.items()}
    return [max([per_class[int(c)] for c in classes], default=1.0) for classes in class_lists]


class TrainSampler(Sampler):
    """An endless, seeded stream of indices, split across ranks, that can skip what a previous
    run already consumed (exact resume). Each pass is a fresh permutation; with repeat factors
    each pass repeats image i floor(r_i) times plus once more with probability frac(r_i)."""

    def __init__(self, size, seed=0, rank=0, world_size=1, factors=None, skip=0):
        self.size, self.seed, self.rank, self.world_size = size, seed, rank, world_size
        self.factors = None if factors is None else torch.tensor(factors, dtype=torch.float64)
        self.skip = skip

    def _passes(self):
        generator = torch.Generator()
        generator.manual_seed(self.seed)
        while True:
            if self.factors is None:
                yield from torch.randperm(self.size, generator=generator).tolist()
                continue
            whole = self.factors.floor()
            extra = torch.rand(self.size, generator=generator, dtype=torch.float64) < (self.factors - whole)
            counts = (whole + extra.double()).long()
            indices = torch.repeat_interleave(torch.arange(self.size), counts)
            yield from indices[torch.randperm(len(indices), generator=generator)].tolist()

    def __iter__(self):
        start = self.rank + self.skip * self.world_size
        yield from itertools.islice(self._passes(), start, None, self.world_size)

    def __len__(self):
        total = self.size if self.factors is None else float(self.factors.sum())
        return max(1, int(math.ceil(total / self.world_size)))


def dataset_class_lists(dataset):
    """Class indices per image of a YOLOX COCODataset (from its loaded annotations)."""
    return [np.asarray(annotation[0][:, 4], dtype=int) for annotation in dataset.annotations]
