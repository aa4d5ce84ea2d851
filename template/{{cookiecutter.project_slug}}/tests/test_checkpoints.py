"""Checkpoints load safely or are refused with one line naming the file: YOLOX's own Trainer
files (numpy best_ap) load without full unpickling, code-running pickles, bit-flipped archives
and non-dicts are refused, and a checkpoint of other classes is refused where labels matter
(eval, predict, export, resume) and reported where it is a starting point (--ckpt)."""

import pathlib
import zipfile

import numpy as np
import pytest
import torch

from yft.inference import load_model
from yft.project import UserError
from yft.train.checkpoint import load_checkpoint
from yft.train.run import train

CPU = torch.device("cpu")


def quick(exp, **settings):
    base = {
        "input_size": (64, 64),
        "test_size": (64, 64),
        "max_epoch": 1,
        "warmup_epochs": 1,
        "scratch_warmup_epochs": 1,
        "no_aug_epochs": 0,
        "multiscale": False,
        "tracker": "none",
        "early_stop_patience": 0,
        "ckpt_interval": 0,
    }
    for key, value in (base | settings).items():
        setattr(exp, key, value)
    return exp


def yolox_trainer_checkpoint(exp, folder):
    """best_ckpt.pth written exactly as YOLOX's Trainer.save_ckpt writes it: its state dict
    (start_epoch, model, optimizer, best_ap as the numpy float64 that COCOeval's stats give)
    through yolox.utils.save_checkpoint."""
    from yolox.utils import save_checkpoint

    model = exp.get_model()
    optimizer = exp.get_optimizer(8)  # YOLOX's own optimizer builder (reads exp.model)
    stats = np.array([0.412, 0.655])  # COCOeval.stats[0] is a numpy float64
    best_ap = max(0, stats[0])
    state = {
        "start_epoch": 4,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "best_ap": best_ap,
    }
    save_checkpoint(state, True, str(folder), "latest")
    return folder / "best_ckpt.pth", model


def test_yolox_trainer_checkpoint_loads_for_eval_and_finetuning(sample_exp, tmp_path, capsys):
    path, model = yolox_trainer_checkpoint(sample_exp, tmp_path / "yolox_out")
    state = load_checkpoint(path)
    assert isinstance(state["best_ap"], np.floating) and state["start_epoch"] == 4
    loaded = load_model(sample_exp, path)
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    out = train(quick(sample_exp), CPU, ckpt=path, batch_size=4, progress=False, max_iters_per_epoch=1)
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith(f"weights: {path} (--ckpt, sha256 ") and "skipped 0" in lines[1]
    assert (out / "last.pth").is_file()


class RunsCode:
    """A pickle that runs code when loaded with full unpickling (it would create `marker`)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker,)


def test_checkpoint_needing_full_unpickling_is_refused(sample_exp, tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pth"
    torch.save({"model": sample_exp.get_model().state_dict(), "extra": RunsCode(marker)}, path)
    with pytest.raises(UserError, match=r"evil.pth: refused: .* full unpickling"):
        load_checkpoint(path)
    with pytest.raises(UserError, match="refused"):
        load_model(sample_exp, path)
    assert not marker.exists()


def flip_a_bit(path, record_suffix="data/0"):
    """Flip one bit inside the stored bytes of a tensor record, as a bad disk or copy would."""
    with zipfile.ZipFile(path) as archive:  # torch stores records uncompressed: find their bytes
        name = next(n for n in archive.namelist() if n.endswith(record_suffix))
        payload = archive.read(name)
    data = bytearray(path.read_bytes())
    offset = bytes(data).index(payload[:64]) + len(payload) // 2
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))


def test_bit_flipped_checkpoint_is_refused(sample_exp, tmp_path):
    path = tmp_path / "best.pth"
    torch.save(
        {"model": sample_exp.get_model().state_dict(), "class_names": list(sample_exp.class_names)}, path
    )
    load_model(sample_exp, path)  # intact: loads
    flip_a_bit(path)
    with pytest.raises(UserError, match=r"best.pth: damaged checkpoint: record .*data/0 fails its CRC check"):
        load_model(sample_exp, path)


def test_checkpoint_that_is_not_a_dict_is_one_line(sample_exp, tmp_path):
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(3)], path)
    with pytest.raises(UserError, match=r"list.pth: holds a list, not a checkpoint"):
        load_checkpoint(path)
    torch.save({"model": {"w": [1, 2]}}, path)
    with pytest.raises(UserError, match=r"no model weights in it .*'w' is a list"):
        load_checkpoint(path)


def test_checkpoint_of_other_classes_refused_for_eval_reported_for_finetuning(sample_exp, tmp_path, capsys):
    names = list(sample_exp.class_names)
    other = names[:-1] + ["something else"]
    path = tmp_path / "other.pth"
    torch.save({"model": sample_exp.get_model().state_dict(), "class_names": other}, path)
    with pytest.raises(
        UserError,
        match=rf"other.pth: trained for other classes: class {len(names) - 1} is "
        r"'something else' in the checkpoint but",
    ):
        load_model(sample_exp, path)
    train(quick(sample_exp), CPU, ckpt=path, batch_size=4, progress=False, max_iters_per_epoch=1)
    out = capsys.readouterr().out
    assert (
        f"classes: {len(names) - 1} of our {len(names)} start from the checkpoint's class weights" in out
    ) and f"1 start fresh ({names[-1]})" in out


def test_resume_with_other_classes_is_refused_before_starting(sample_exp, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    model = sample_exp.get_model().state_dict()
    bigger = type(sample_exp)()
    bigger.num_classes = sample_exp.num_classes + 1
    bigger.set_architecture(sample_exp.model_name)
    torch.save(
        {
            "train_model": bigger.get_model().state_dict(),
            "model": model,
            "epoch": 1,
            "iteration": 1,
            "class_names": list(sample_exp.class_names) + ["extra"],
        },
        run / "last.pth",
    )
    with pytest.raises(UserError, match=r"last.pth: trained for other classes: the checkpoint has 1 more"):
        train(quick(sample_exp), CPU, resume=True, out_dir=run, batch_size=4, progress=False)
    # The same without stored names: the shapes are checked before any step runs.
    torch.save(
        {"train_model": bigger.get_model().state_dict(), "model": model, "epoch": 1, "iteration": 1},
        run / "last.pth",
    )
    with pytest.raises(UserError, match=r"last.pth: does not fit the Exp's model \(.*skipped 6"):
        train(quick(sample_exp), CPU, resume=True, out_dir=run, batch_size=4, progress=False)
    assert sorted(p.name for p in run.iterdir()) == ["last.pth"]
