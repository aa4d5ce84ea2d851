"""One rank of tests/test_train_ddp.py, started by torchrun (2 processes, gloo on the CPU).

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/ddp_worker.py DATA OUT PHASE

DATA holds a sample dataset; each rank writes OUT/rank<N>-<PHASE>.json with what it saw. The
scenarios of a phase run one after another in the same processes, in one process group: a
real run joins and leaves it once, and gloo does not reliably take a process that leaves and
joins again (one rank waited forever in init_process_group), so leaving waits for the phase's
end. The first phase ends with a kill, the second (new processes) resumes.
"""

import faulthandler
import json
import os
import sys
import traceback
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from synthetic_models import boxy_model, tiny

import yft.evaluate.run as evaluate_run
from yft.data.loaders import build_train_loader
from yft.inference import TorchBackend
from yft.project import UserError, load_exp
from yft.train import distributed
from yft.train.hooks import HookBase
from yft.train.optim import LRSchedule, build_optimizer
from yft.train.run import train
from yft.train.trainer import Trainer

CPU = torch.device("cpu")
RANK = int(os.environ["RANK"])
DATA, OUT = Path(sys.argv[1]), Path(sys.argv[2])
report = {"rank": RANK, "eval_images": []}

# Count the validation images this rank detects on (sharding).
_detect_split = evaluate_run.detect_split


def counting_detect_split(backend, loader, exp, progress=True):
    report["eval_images"].append(len(loader.dataset))
    return _detect_split(backend, loader, exp, progress)


evaluate_run.detect_split = counting_detect_split


def tiny_exp(output):
    exp = tiny(
        load_exp(),
        data_dir=str(DATA),
        output_dir=str(output),
        data_num_workers=0,
        max_epoch=3,
        eval_interval=1,
        deterministic=True,
        log_interval=1,
    )
    exp.pretrained = None  # random weights: no download
    return exp


class Record(HookBase):
    """Per step: the model is trained through DDP; the logged losses (both ranks compare them)."""

    def __init__(self):
        self.wrapped, self.losses, self.metrics = [], [], []

    def before_step(self):
        self.wrapped.append(isinstance(self.trainer.wrapped, DistributedDataParallel))

    def after_step(self):
        self.losses.append(self.trainer.losses["total_loss"])

    def after_epoch(self):
        self.metrics.append(self.trainer.metrics["mAP50_95"])


class Kill(HookBase):
    def after_epoch(self):
        if self.trainer.epoch == 1:
            raise KeyboardInterrupt  # every rank dies after epoch 2 was checkpointed


class Diverge(HookBase):
    def after_train(self):
        if distributed.rank() == 1:
            with torch.no_grad():
                next(self.trainer.model.parameters()).add_(1.0)


def run_kwargs(out):
    return {"batch_size": 4, "progress": False, "max_iters_per_epoch": 2, "out_dir": out}


def scenario_train():
    record = Record()
    out = train(tiny_exp(OUT / "runs"), CPU, extra_hooks=[record], **run_kwargs(OUT / "straight"))
    report.update(wrapped=record.wrapped, losses=record.losses, metrics=record.metrics, out=str(out))


def scenario_kill():
    """Every rank dies after epoch 2 (the last scenario of its torchrun: a real kill ends the processes)."""
    try:
        train(tiny_exp(OUT / "runs"), CPU, extra_hooks=[Kill()], **run_kwargs(OUT / "split"))
    except KeyboardInterrupt:
        report["killed"] = True


def scenario_resume():
    train(tiny_exp(OUT / "runs"), CPU, resume=True, **run_kwargs(OUT / "split"))


def scenario_diverge():
    exp = tiny_exp(OUT / "runs")
    exp.max_epoch = 1
    try:
        train(exp, CPU, extra_hooks=[Diverge()], **run_kwargs(OUT / "diverge"))
        report["diverge"] = "no error"
    except UserError as err:
        report["diverge"] = str(err)


def scenario_sharded_eval():
    """A model that detects plenty and matches some boxes (untrained, biased heads: boxy_model),
    evaluated by both ranks together."""
    exp = tiny_exp(OUT / "runs")
    exp.test_conf = 0.3
    device = distributed.init(CPU)
    try:
        model = boxy_model(exp)
        if RANK == 0:
            torch.save({"model": model.state_dict()}, OUT / "detecting.pth")
        metrics, results = evaluate_run.evaluate_backend(
            TorchBackend(model, device), exp, "val", device, batch_size=2, progress=False, sharded=True
        )
        report["sharded_eval"] = {
            "metrics": {
                k: metrics[k] for k in ("mAP50_95", "mAP50", "num_detections", "num_images", "per_class")
            },
            "detections": results,
        }
        distributed.barrier()
    finally:
        distributed.shutdown()


def scenario_bare_trainer():
    """The Trainer alone (no Freezer hook) still trains through DDP, and refuses to step unwrapped."""
    exp = tiny_exp(OUT / "runs")
    exp.max_epoch = 1
    device = distributed.init(CPU)
    try:
        model = exp.get_model()
        distributed.broadcast_model(model)
        loader = build_train_loader(exp, 2, CPU, seed=3, rank=RANK, world_size=2)
        optimizer = build_optimizer(model, exp, CPU)
        trainer = Trainer(exp, model, optimizer, LRSchedule(exp, 0.01, 2), loader, device, 2)
        trainer._data = iter(loader)
        try:
            trainer.run_step()
            report["unwrapped_step"] = "ran"
        except RuntimeError as err:
            report["unwrapped_step"] = str(err)
        trainer.train()
        report["bare_trainer_disagreement"] = distributed.weights_disagreement(model, device)
        distributed.barrier()
    finally:
        distributed.shutdown()


PHASES = {
    "first": (scenario_train, scenario_kill),
    "second": (scenario_resume, scenario_diverge, scenario_sharded_eval, scenario_bare_trainer),
}
PHASE = sys.argv[3]
distributed.init(CPU)
_shutdown, distributed.shutdown = distributed.shutdown, distributed.barrier
faulthandler.dump_traceback_later(420, exit=True)  # a hang shows where, instead of waiting for gloo's timeout
try:
    for scenario in PHASES[PHASE]:
        scenario()
except BaseException:
    report["error"] = traceback.format_exc()
    raise
else:
    distributed.barrier()
    _shutdown()
finally:
    # Whole or not at all: torchrun stops the other rank as soon as one fails.
    partial = OUT / f"rank{RANK}-{PHASE}.json.partial"
    partial.write_text(json.dumps(report, indent=1, default=str))
    partial.replace(OUT / f"rank{RANK}-{PHASE}.json")
