"""TensorRT engines from the exported ONNX model, with the TensorRT Python API (not torch2trt).

    builder + ONNX parser -> network
    optimisation profile: min / opt / max batch (the ONNX batch dimension is dynamic)
    FP16 flag; INT8 with an entropy calibrator fed letterboxed validation images, and its
    calibration cache (reused while it exists: delete it to recalibrate)
    timing cache (reused across builds: later builds of the same model are much faster)
    -> serialized engine, written atomically, plus a JSON sidecar (classes, input size,
       precision, TensorRT version, GPU) that `TrtBackend` reads.

TensorRT is imported lazily: it comes from NVIDIA's package index and needs an NVIDIA GPU.
"""

import datetime
import hashlib
import json
from pathlib import Path

import numpy as np

# The runtime half (import, sidecar reading) lives with the backends, which this module builds for.
from yft.inference import INSTALL_HINT, import_tensorrt, letterbox, onnx_metadata, sidecar_path
from yft.io import write_atomic, write_json
from yft.project import UserError, relative


def missing_requirements():
    """What this machine lacks for building or running an engine ([] when nothing)."""
    import importlib.util

    import torch

    missing = []
    if importlib.util.find_spec("tensorrt") is None:
        missing.append(f"TensorRT is not installed (install it with `{INSTALL_HINT}`)")
    if not torch.cuda.is_available():
        missing.append("no NVIDIA GPU is visible to CUDA (TensorRT engines are built and run on one)")
    return missing


def require_tensorrt(onnx_path=None):
    """Raise one clear UserError naming everything missing, and the ONNX model already made."""
    missing = missing_requirements()
    if missing:
        done = f"; the ONNX model is ready at {relative(onnx_path)}" if onnx_path else ""
        raise UserError("cannot build a TensorRT engine: " + " and ".join(missing) + done)


def calibration_files(exp, count, split="val"):
    """The first `count` images of a split (file order), for INT8 calibration."""
    from yft.data.coco_io import image_dir
    from yft.io import list_images

    folder = image_dir(exp, split)
    files = list_images(folder, recursive=False)
    if not files:
        raise UserError(f"{folder}: no images for INT8 calibration")
    return files[:count]


class CalibrationBatches:
    """Letterboxed float32 batches (batch_size, 3, H, W) of image files, exactly as inference
    preprocesses them. Unreadable files are skipped (and listed in `skipped`); a last partial
    batch is dropped, because TensorRT calibrates at one fixed batch shape."""

    def __init__(self, files, input_size, batch_size):
        self.files, self.input_size = list(files), tuple(input_size)
        self.batch_size = max(1, min(batch_size, len(self.files)))
        self.skipped = []

    def __iter__(self):
        import cv2

        batch = []
        for path in self.files:
            img = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if img is None or img.size == 0:
                self.skipped.append(path)
                continue
            batch.append(letterbox(img, self.input_size)[0])
            if len(batch) == self.batch_size:
                yield np.ascontiguousarray(np.stack(batch), dtype=np.float32)
                batch = []


def make_calibrator(trt, batches, cache_path):
    """An IInt8EntropyCalibrator2 fed by `batches` (a CalibrationBatches) through a CUDA tensor."""
    import torch

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            super().__init__()
            self.batches, self.cache_path = iter(batches), Path(cache_path)
            self.device_input = None
            self.count = 0

        def get_batch_size(self):
            return batches.batch_size

        def get_batch(self, names):
            batch = next(self.batches, None)
            if batch is None:
                return None
            self.device_input = torch.from_numpy(batch).cuda()
            self.count += len(batch)
            return [int(self.device_input.data_ptr())]

        def read_calibration_cache(self):
            return self.cache_path.read_bytes() if self.cache_path.is_file() else None

        def write_calibration_cache(self, cache):
            write_atomic(self.cache_path, bytes(cache))

    return EntropyCalibrator()


def build_engine(
    onnx_path,
    engine_path,
    input_size,
    *,
    fp16=False,
    int8=False,
    calib=None,
    calib_cache=None,
    min_batch=1,
    opt_batch=1,
    max_batch=1,
    workspace_gb=4.0,
    timing_cache=None,
):
    """Parse the ONNX model, build and write a serialized engine (atomically). Returns the
    TensorRT version. `calib` is a CalibrationBatches (INT8 only)."""
    trt = import_tensorrt(onnx_path)
    logger = trt.Logger(trt.Logger.WARNING)
    trt.init_libnvinfer_plugins(logger, "")  # EfficientNMS_TRT, if the graph has it
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):  # TensorRT 8.x; implicit in 10
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise UserError(f"{onnx_path}: TensorRT's ONNX parser failed: {errors}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * 2**30))
    images = network.get_input(0)
    chw = (3, *input_size)
    if images.shape[0] == -1:
        if not 1 <= min_batch <= opt_batch <= max_batch:
            raise UserError(
                f"batch sizes must satisfy 1 <= min ({min_batch}) <= opt ({opt_batch}) <= max ({max_batch})"
            )
        profile = builder.create_optimization_profile()
        profile.set_shape(images.name, (min_batch, *chw), (opt_batch, *chw), (max_batch, *chw))
        config.add_optimization_profile(profile)
    elif (min_batch, opt_batch, max_batch) != (images.shape[0],) * 3:
        raise UserError(
            f"{onnx_path}: has a fixed batch of {images.shape[0]}; export it with "
            "--dynamic-batch for other batch sizes"
        )
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    if int8:
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = make_calibrator(trt, calib, calib_cache)
        if images.shape[0] == -1:  # calibrate at the calibration batch size
            calib_profile = builder.create_optimization_profile()
            shape = (calib.batch_size, *chw)
            calib_profile.set_shape(images.name, shape, shape, shape)
            config.set_calibration_profile(calib_profile)
    cache = config.create_timing_cache(
        Path(timing_cache).read_bytes() if timing_cache and Path(timing_cache).is_file() else b""
    )
    config.set_timing_cache(cache, ignore_mismatch=False)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise UserError(f"{onnx_path}: TensorRT could not build an engine (see its log above)")
    write_atomic(engine_path, bytes(serialized))
    if timing_cache:
        write_atomic(timing_cache, bytes(config.get_timing_cache().serialize()))
    return trt.__version__


def sidecar(exp, onnx_path, precision, batches, trt_version, gpu, calib_images=0):
    """What a deployment needs to know about an engine besides the engine itself."""
    meta = onnx_metadata(onnx_path)
    return {
        "schema": 1,
        "class_names": list(exp.class_names),
        "category_ids": list(exp.category_ids()),
        "input_size": list(exp.test_size),
        "preprocessing": meta.get("preprocessing"),
        "decode": meta.get("decode", "true") == "true",
        "nms": meta.get("nms") or None,
        "precision": precision,
        "calibration_images": calib_images,
        "batch": dict(zip(("min", "opt", "max"), batches)),
        "tensorrt_version": trt_version,
        "gpu": gpu,
        "onnx": Path(onnx_path).name,
        "onnx_sha256": hashlib.sha256(Path(onnx_path).read_bytes()).hexdigest(),
        "built": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def write_sidecar(engine_path, info):
    write_json(sidecar_path(engine_path), info, indent=2)
    return sidecar_path(engine_path)


def precision_name(fp16, int8):
    return "int8" if int8 else "fp16" if fp16 else "fp32"


def describe_gpu():
    import torch

    index = torch.cuda.current_device()
    major, minor = torch.cuda.get_device_capability(index)
    return f"{torch.cuda.get_device_name(index)} (compute capability {major}.{minor})"


def engine_summary(info):
    return json.dumps({k: info[k] for k in ("precision", "batch", "tensorrt_version", "gpu")})
