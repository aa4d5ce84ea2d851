"""Running a trained model: preprocessing, the torch and ONNX backends, and box decoding.

Evaluation, prediction and export all go through these few functions, so a box means the
same thing everywhere: (x1, y1, x2, y2) in the pixels of the original image.
"""

import numpy as np
import torch

from yft.project import UserError


def letterbox(img, size):
    """YOLOX's test preprocessing: resize keeping the aspect ratio, pad with grey (114).

    Returns (CHW float32 array, ratio); boxes found on it map back by dividing by ratio.
    """
    from yolox.data.data_augment import preproc

    if img.ndim == 2:  # grayscale: the model wants three channels
        img = np.repeat(img[:, :, None], 3, axis=2)
    return preproc(img, size)


def decode(raw, ratios, num_classes, conf, nms):
    """Raw head outputs (B, anchors, 5 + classes) -> per image an (N, 6) array
    [x1, y1, x2, y2, score, class_index] in original-image pixels, best score first."""
    from yolox.utils import postprocess

    results = []
    for det, ratio in zip(postprocess(raw.float(), num_classes, conf, nms), ratios):
        if det is None:
            results.append(np.zeros((0, 6), np.float32))
            continue
        det = det.cpu().numpy()
        boxes = det[:, :4] / ratio
        scores = det[:, 4] * det[:, 5]
        out = np.concatenate([boxes, scores[:, None], det[:, 6:7]], axis=1).astype(np.float32)
        results.append(out[np.argsort(-out[:, 4], kind="stable")])
    return results


class TorchBackend:
    """A YOLOX model in eval mode that returns decoded raw outputs on the CPU."""

    name = "torch"

    def __init__(self, model, device):
        self.model = model.to(device).eval()
        self.model.head.decode_in_inference = True
        self.device = device

    @torch.no_grad()  # not inference_mode: yolox's postprocess edits the output in place
    def __call__(self, images):
        images = torch.as_tensor(images).to(self.device, non_blocking=True).float()
        return self.model(images).cpu()


class OnnxBackend:
    """An exported ONNX model (decode in the graph) run by onnxruntime."""

    name = "onnx"

    def __init__(self, path, device=None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise UserError("onnxruntime is not installed: pip install onnxruntime") from None
        providers = ["CPUExecutionProvider"]
        if device is not None and device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        self.session = ort.InferenceSession(str(path), providers=providers)
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, images):
        images = np.ascontiguousarray(np.asarray(images, dtype=np.float32))
        return torch.from_numpy(self.session.run(None, {self.input_name: images})[0])


def default_checkpoint(exp):
    """runs/<exp>/train/best.pth, else last.pth of the same run."""
    from yft.project import run_dir

    folder = run_dir(exp, "train")
    for name in ("best.pth", "last.pth"):
        if (folder / name).is_file():
            return folder / name
    raise UserError(f"no checkpoint in {folder}: run `invoke train` first or pass --ckpt")


def load_model(exp, ckpt):
    """The Exp's model with a checkpoint's weights; every model tensor must be found."""
    from yft.train.checkpoint import load_checkpoint, load_weights

    model = exp.get_model()
    report = load_weights(model, load_checkpoint(ckpt))
    if report.skipped or report.missing:
        raise UserError(f"{ckpt}: does not fit the Exp's model ({report.summary()})")
    return model


def make_backend(exp, ckpt, backend, device):
    """A callable images -> raw outputs, for the torch or onnx backend."""
    from pathlib import Path

    if backend == "onnx":
        path = Path(ckpt) if ckpt else default_checkpoint(exp).with_suffix(".onnx")
        if not path.is_file() or path.suffix != ".onnx":
            raise UserError(f"{path}: no ONNX model there (run `invoke export-onnx`, or pass --ckpt file.onnx)")
        return OnnxBackend(path, device), path
    if backend != "torch":
        raise UserError(f"--backend {backend}: use torch or onnx")
    path = Path(ckpt) if ckpt else default_checkpoint(exp)
    return TorchBackend(load_model(exp, path), device), path
