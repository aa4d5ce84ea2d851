"""`invoke eval`: evaluate a checkpoint (or ONNX model) on a split and write metrics.json."""

from yft.evaluate.run import evaluate_backend, format_table, write_report
from yft.inference import make_backend
from yft.project import relative


def run_eval(exp, device, ckpt, split, backend_name, batch_size):
    if split not in ("val", "test"):
        from yft.project import UserError
        raise UserError(f"--split {split}: use val or test")
    backend, path = make_backend(exp, ckpt, backend_name, device)
    metrics, results = evaluate_backend(backend, exp, split, device, batch_size)
    metrics["checkpoint"] = relative(path)
    out = path.parent / f"eval_{split}_{backend_name}"
    write_report(metrics, results, out)
    print(format_table(metrics))
    print(f"metrics written to {relative(out / 'metrics.json')}")
    return metrics
