"""Data loaders built from YOLOX's own dataset, mosaic/mixup and transforms.

YOLOX's `Exp.get_data_loader` pins memory unconditionally and rebinds `exp.dataset`; these
builders take the device as an argument and leave the Exp alone, so the same code feeds a
CPU laptop and a GPU node.
"""

import contextlib
import io
import random

import numpy as np
import torch

from yft.data.precheck import check_split


def _quiet():
    """pycocotools prints 'loading annotations into memory...' for every file; hide it."""
    return contextlib.redirect_stdout(io.StringIO())


def coco_dataset(exp, split, img_size, preproc, cache=False):
    """YOLOX's COCODataset for train, val or test, after checking the files exist."""
    from yolox.data import COCODataset

    check_split(exp, split)
    json_file = {"train": exp.train_ann, "val": exp.val_ann, "test": exp.test_ann}[split]
    name = {"train": exp.train_name, "val": exp.val_name, "test": exp.test_name}[split]
    with _quiet():
        return COCODataset(
            data_dir=exp.data_dir,
            json_file=json_file,
            name=name,
            img_size=img_size,
            preproc=preproc,
            cache=cache,
        )


def build_train_dataset(exp, no_aug=False):
    """Training images with YOLOX's mosaic, mixup, affine, HSV and flip augmentation, plus our
    image cache and copy-paste (see yft.data.copy_paste)."""
    from yolox.data import MosaicDetection, TrainTransform

    from yft.data.copy_paste import TrainSource

    base = coco_dataset(
        exp,
        "train",
        exp.input_size,
        TrainTransform(max_labels=50, flip_prob=exp.flip_prob, hsv_prob=exp.hsv_prob),
    )
    source = TrainSource(
        base,
        cache=exp.cache,
        copy_paste_prob=exp.copy_paste_prob,
        copy_paste_max=exp.copy_paste_max,
        copy_paste_max_area=exp.copy_paste_max_area,
    )
    return MosaicDetection(
        source,
        mosaic=not no_aug,
        img_size=exp.input_size,
        preproc=TrainTransform(max_labels=120, flip_prob=exp.flip_prob, hsv_prob=exp.hsv_prob),
        degrees=exp.degrees,
        translate=exp.translate,
        mosaic_scale=exp.mosaic_scale,
        mixup_scale=exp.mixup_scale,
        shear=exp.shear,
        enable_mixup=exp.enable_mixup,
        mosaic_prob=exp.mosaic_prob,
        mixup_prob=exp.mixup_prob,
    )


def _seed_worker(base_seed):
    def init(worker_id):
        seed = (base_seed + worker_id) % 2**32
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)

    return init


def build_train_loader(exp, batch_size, device, seed=0, rank=0, world_size=1, no_aug=False, skip_batches=0):
    """An endless loader of (images, targets, img_info, ids); `len()` is one epoch of batches.

    batch_size is per process. `loader.close_mosaic()` switches to plain images for the final
    epochs. skip_batches: batches a previous run already consumed (resume continues the same
    index stream). exp.repeat_threshold turns on repeat-factor sampling of rare classes.
    """
    from yolox.data import DataLoader, YoloBatchSampler

    from yft.train.sampling import TrainSampler, dataset_class_lists, repeat_factors

    dataset = build_train_dataset(exp, no_aug=no_aug)
    factors = None
    if exp.repeat_threshold:
        factors = repeat_factors(dataset_class_lists(dataset._dataset), exp.repeat_threshold)
    sampler = TrainSampler(
        len(dataset),
        seed=seed,
        rank=rank,
        world_size=world_size,
        factors=factors,
        skip=skip_batches * batch_size,
    )
    batch_sampler = YoloBatchSampler(
        sampler=sampler, batch_size=batch_size, drop_last=False, mosaic=not no_aug
    )
    return DataLoader(
        dataset,
        batch_sampler=batch_sampler,
        num_workers=exp.data_num_workers,
        pin_memory=device.type == "cuda",
        worker_init_fn=_seed_worker(seed + 1000 * rank),
        persistent_workers=exp.data_num_workers > 0,
    )


def build_eval_loader(exp, split, batch_size, device, rank=0, world_size=1):
    """Letterboxed images of a split, in file order, with their original sizes and ids.

    With world_size > 1, this rank's share: images rank, rank + world_size, ... (a Subset whose
    .dataset is the whole split)."""
    from yolox.data import ValTransform

    dataset = coco_dataset(exp, split, exp.test_size, ValTransform(legacy=False))
    if world_size > 1:
        dataset = torch.utils.data.Subset(dataset, range(rank, len(dataset), world_size))
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=exp.data_num_workers,
        pin_memory=device.type == "cuda",
    )
