"""Running a trained model: preprocessing, the torch, ONNX and TensorRT backends, box decoding.

Evaluation, prediction, export and training's validation all go through these few functions,
so a box means the same thing everywhere: (x1, y1, x2, y2) in the pixels of the original image.
They import this module; it imports none of them (building engines is yft.deploy.trt's job,
running them is here).
"""

import json
from pathlib import Path

import numpy as np
import torch

from yft.data.coco_io import read_json
from yft.project import UserError, relative


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


def decode_grid(raw, input_size, strides=(8, 16, 32)):
    """Decode raw head outputs (an ONNX model exported with --no-decode) the way YOLOX's head
    does: (x, y) offsets plus the cell, times the stride; (w, h) as exp(.) times the stride."""
    raw = torch.as_tensor(raw).float().clone()
    grids, scales = [], []
    for stride in strides:
        h, w = input_size[0] // stride, input_size[1] // stride
        yv, xv = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        grids.append(torch.stack((xv, yv), 2).view(1, -1, 2))
        scales.append(torch.full((1, h * w, 1), float(stride)))
    grid, scale = torch.cat(grids, 1), torch.cat(scales, 1)
    if raw.shape[1] != grid.shape[1]:
        raise UserError(
            f"raw output has {raw.shape[1]} anchors, input size {tuple(input_size)} "
            f"with strides {strides} gives {grid.shape[1]}"
        )
    raw[..., :2] = (raw[..., :2] + grid) * scale
    raw[..., 2:4] = torch.exp(raw[..., 2:4]) * scale
    return raw


def detections_from_nms(batch_index, boxes, scores, classes, ratios, conf):
    """Detections of an NMS that ran inside the model (one row per kept box, with the index of
    its image) -> per image an (N, 6) array like `decode` returns."""
    results = []
    for i, ratio in enumerate(ratios):
        keep = (batch_index == i) & (scores >= conf)
        out = np.concatenate([boxes[keep] / ratio, scores[keep, None], classes[keep, None]], axis=1)
        out = out.astype(np.float32).reshape(-1, 6)
        results.append(out[np.argsort(-out[:, 4], kind="stable")])
    return results


class Backend:
    """What evaluation, prediction and benchmarks run: `backend(images)` gives decoded raw
    outputs (B, anchors, 5 + classes) as a CPU tensor; `backend.detect(images, ratios, conf, nms)`
    gives per image an (N, 6) array [x1, y1, x2, y2, score, class] in original-image pixels."""

    name = "base"
    nms_in_graph = None  # None, "onnx" or "trt": NMS already ran inside the model

    def __call__(self, images):
        raise NotImplementedError

    def detect_raw(self, images, ratios, conf, nms):
        """Detections decoded from the raw outputs by our NMS (never a graph's own NMS, whose
        thresholds are fixed at export): what evaluation measures."""
        raw = self(images)
        return decode(raw, ratios, raw.shape[-1] - 5, conf, nms)

    def detect(self, images, ratios, conf, nms):
        return self.detect_raw(images, ratios, conf, nms)


class TorchBackend(Backend):
    """A YOLOX model in eval mode that returns decoded raw outputs on the CPU."""

    name = "torch"

    def __init__(self, model, device):
        self.model = model.to(device).eval()
        self.model.head.decode_in_inference = True
        self.device = device

    @torch.no_grad()  # not inference_mode: yolox's postprocess edits the output in place
    def __call__(self, images):
        return self._forward(images).cpu()

    def _forward(self, images):
        images = torch.as_tensor(images).to(self.device, non_blocking=True).float()
        return self.model(images)

    @torch.no_grad()
    def detect_raw(self, images, ratios, conf, nms):
        # NMS on the model's device: only the kept boxes travel to the CPU, not every anchor.
        raw = self._forward(images)
        return decode(raw, ratios, raw.shape[-1] - 5, conf, nms)


def onnx_metadata(path):
    """The metadata `yft.deploy.onnx_export` writes into a model, as a dict of strings."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


class OnnxBackend(Backend):
    """An exported ONNX model run by onnxruntime. Graphs exported with --no-decode are decoded
    here; graphs with ONNX NonMaxSuppression inside answer `detect` from the graph's own NMS."""

    name = "onnx"

    def __init__(self, path, device=None, threads=None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise UserError("onnxruntime is not installed: pip install onnxruntime") from None
        meta = onnx_metadata(path)
        self.nms_in_graph = meta.get("nms") or None
        if self.nms_in_graph == "trt":
            raise UserError(
                f"{path}: has TensorRT's EfficientNMS in the graph, which only TensorRT "
                "runs; use --backend trt, or export with --nms onnx for onnxruntime"
            )
        self.decoded = meta.get("decode", "true") == "true"
        self.input_size = tuple(json.loads(meta["input_size"])) if "input_size" in meta else None
        self.strides = tuple(json.loads(meta.get("strides", "[8, 16, 32]")))
        if self.nms_in_graph:
            self.conf, self.iou = float(meta["nms_conf"]), float(meta["nms_iou"])
        providers = ["CPUExecutionProvider"]
        if (
            device is not None
            and device.type == "cuda"
            and "CUDAExecutionProvider" in ort.get_available_providers()
        ):
            providers.insert(0, "CUDAExecutionProvider")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as err:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise UserError(f"{path}: onnxruntime cannot load it ({str(err).splitlines()[0]})") from None
        self.input_name = self.session.get_inputs()[0].name
        self.path = Path(path)

    def run(self, images):
        images = np.ascontiguousarray(np.asarray(images, dtype=np.float32))
        return self.session.run(None, {self.input_name: images})

    def __call__(self, images):
        if self.nms_in_graph:
            raise UserError(
                f"{self.path}: NMS runs inside this model, so it has no raw outputs; "
                "export without --nms for evaluation"
            )
        out = torch.from_numpy(self.run(images)[0])
        return out if self.decoded else decode_grid(out, self.input_size, self.strides)

    def detect(self, images, ratios, conf, nms):
        if not self.nms_in_graph:
            return super().detect(images, ratios, conf, nms)
        det = self.run(images)[0]  # (K, 7): image index, x1, y1, x2, y2, score, class
        return detections_from_nms(det[:, 0].astype(int), det[:, 1:5], det[:, 5], det[:, 6], ratios, conf)


# TensorRT comes from NVIDIA's package index and needs an NVIDIA GPU: imported lazily.
INSTALL_HINT = "pip install tensorrt-cu12 --extra-index-url https://pypi.nvidia.com"


def import_tensorrt(context=None):
    """The tensorrt module, or a UserError that says how to install it."""
    try:
        import tensorrt
    except ImportError:
        where = f"{context}: " if context else ""
        raise UserError(f"{where}TensorRT is not installed; install it with `{INSTALL_HINT}`") from None
    return tensorrt


def sidecar_path(engine_path):
    """best.engine -> best.engine.json"""
    return Path(str(engine_path) + ".json")


def read_sidecar(engine_path):
    path = sidecar_path(engine_path)
    if not path.is_file():
        raise UserError(f"{path}: the engine's sidecar is missing (rebuild with `invoke export-trt`)")
    return read_json(path)


class TrtBackend(Backend):
    """A TensorRT engine built by `invoke export-trt` (needs tensorrt and an NVIDIA GPU); inputs
    and outputs live in torch CUDA tensors, so no pycuda is needed."""

    name = "trt"

    def __init__(self, path, device=None):
        trt = import_tensorrt(path)
        self.sidecar = read_sidecar(path)
        self.nms_in_graph = self.sidecar.get("nms") or None
        self.device = device if device is not None and device.type == "cuda" else torch.device("cuda")
        logger = trt.Logger(trt.Logger.WARNING)
        trt.init_libnvinfer_plugins(logger, "")  # EfficientNMS_TRT lives in the plugin library
        self.engine = trt.Runtime(logger).deserialize_cuda_engine(Path(path).read_bytes())
        if self.engine is None:
            raise UserError(
                f"{path}: TensorRT cannot load this engine (built by another TensorRT "
                "version or GPU? rebuild it with `invoke export-trt`)"
            )
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if n not in self.inputs]
        self.dtypes = {
            n: torch.from_numpy(np.zeros(0, trt.nptype(self.engine.get_tensor_dtype(n)))).dtype for n in names
        }
        self.stream = torch.cuda.Stream(self.device)

    def run(self, images):
        images = torch.as_tensor(images).to(self.device).float().contiguous()
        self.context.set_input_shape(self.inputs[0], tuple(images.shape))
        self.context.set_tensor_address(self.inputs[0], images.data_ptr())
        outputs = {}
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            outputs[name] = torch.empty(shape, dtype=self.dtypes[name], device=self.device)
            self.context.set_tensor_address(name, outputs[name].data_ptr())
        with torch.cuda.stream(self.stream):
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise UserError("TensorRT failed to run the engine")
        self.stream.synchronize()
        return {name: tensor.cpu() for name, tensor in outputs.items()}

    def __call__(self, images):
        if self.nms_in_graph:
            raise UserError(
                "NMS runs inside this engine, so it has no raw outputs; build it from an "
                "ONNX model exported without --nms for evaluation"
            )
        out = self.run(images)["output"].float()
        return out if self.sidecar.get("decode", True) else decode_grid(out, self.sidecar["input_size"])

    def detect(self, images, ratios, conf, nms):
        if not self.nms_in_graph:
            return super().detect(images, ratios, conf, nms)
        out = self.run(images)
        counts = out["num_dets"].view(-1).tolist()
        index = np.concatenate([np.full(n, i) for i, n in enumerate(counts)]).astype(int)

        def pick(name):
            return np.concatenate([out[name][i, :n].float().numpy() for i, n in enumerate(counts)])

        return detections_from_nms(
            index, pick("det_boxes").reshape(-1, 4), pick("det_scores"), pick("det_classes"), ratios, conf
        )


def default_checkpoint(exp):
    """best.pth of the latest run (yft.runs.resolve_run), else its last.pth."""
    from yft.runs import resolve_run

    folder = resolve_run(exp)
    for name in ("best.pth", "last.pth"):
        if (folder / name).is_file():
            return folder / name
    # a run stopped (Ctrl-C) before its first checkpoint still is `latest`: name the newest
    # earlier run that has one, rather than only suggest waiting
    from yft.runs import numbered

    earlier = [
        run / name
        for run in reversed(numbered(folder.parent, "train"))
        if run != folder
        for name in ("best.pth", "last.pth")
        if (run / name).is_file()
    ]
    hint = f"pass --ckpt, e.g. --ckpt {relative(earlier[0])}" if earlier else "pass --ckpt"
    raise UserError(
        f"no checkpoint in {relative(folder)} (still training, or stopped before the end of "
        f"its first epoch): wait for it, or {hint}"
    )


def load_model(exp, ckpt):
    """The Exp's model with a checkpoint's weights; every model tensor must be found, and a
    checkpoint that names its classes must name the Exp's (else the labels would be wrong)."""
    from yft.train.checkpoint import check_class_names, load_checkpoint, load_weights

    state = load_checkpoint(ckpt)
    check_class_names(state, exp, ckpt, "evaluating, predicting or exporting")
    model = exp.get_model()
    report = load_weights(model, state)
    if report.skipped or report.missing:
        raise UserError(f"{ckpt}: does not fit the Exp's model ({report.summary()})")
    return model


def make_backend(exp, ckpt, backend, device):
    """A backend (see `Backend`) and the file it runs: torch (a .pth checkpoint), onnx (an
    .onnx model) or trt (a TensorRT .engine); the default file is the run's best.*."""
    suffix = {"torch": ".pth", "onnx": ".onnx", "trt": ".engine"}.get(backend)
    if suffix is None:
        raise UserError(f"--backend {backend}: use torch, onnx or trt")
    path = Path(ckpt) if ckpt else default_checkpoint(exp).with_suffix(suffix)
    if backend == "onnx":
        if not path.is_file() or path.suffix != ".onnx":
            raise UserError(
                f"{path}: no ONNX model there (run `invoke export-onnx`, or pass --ckpt file.onnx)"
            )
        return OnnxBackend(path, device), path
    if backend == "trt":
        if not path.is_file() or path.suffix != ".engine":
            raise UserError(
                f"{path}: no TensorRT engine there (run `invoke export-trt`, or pass --ckpt file.engine)"
            )
        return TrtBackend(path, device), path
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found")
    return TorchBackend(load_model(exp, path), device), path
