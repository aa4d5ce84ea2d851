"""Shared fixtures: the project's Exp, pointed at a temporary dataset and run folder."""

import pytest

from yft.data.sample import make_sample_dataset
from yft.project import load_exp


@pytest.fixture(scope="session", autouse=True)
def no_downloads(tmp_path_factory):
    """Tests never read the user's weights cache nor the network: an empty cache and a mirror
    address that refuses connections (a test that needs a server starts its own)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("YFT_WEIGHTS", str(tmp_path_factory.mktemp("weights-cache")))
        patch.setenv("YFT_WEIGHTS_URL", "http://127.0.0.1:9")
        yield


@pytest.fixture
def exp(tmp_path):
    """The project's Exp with data and runs under tmp_path (the project folder stays clean)."""
    exp = load_exp()
    exp.data_dir = str(tmp_path / "data")
    exp.output_dir = str(tmp_path / "runs")
    exp.data_num_workers = 0
    exp.pretrained = None  # tests start from random weights unless they pass a checkpoint: no downloads
    return exp


@pytest.fixture
def sample_exp(exp):
    """`exp` with a small synthetic dataset written."""
    make_sample_dataset(exp, counts=(12, 6, 4), seed=1)
    return exp


def detecting_checkpoint(root, counts, seed, **settings):
    """(exp, checkpoint) under root: a synthetic dataset of `counts` train/val/test images and an
    untrained model whose biases make it detect plenty, so every analysis has boxes to work on."""
    import torch

    exp = load_exp()
    exp.data_dir, exp.output_dir, exp.data_num_workers = str(root / "data"), str(root / "runs"), 0
    for key, value in settings.items():
        setattr(exp, key, value)
    make_sample_dataset(exp, counts=counts, seed=seed)
    torch.manual_seed(0)
    model = exp.get_model()
    with torch.no_grad():
        for obj, cls in zip(model.head.obj_preds, model.head.cls_preds):
            obj.bias.fill_(1.0)
            cls.bias.normal_(0.0, 1.0)
    ckpt = root / "runs" / "train" / "best.pth"
    ckpt.parent.mkdir(parents=True)
    torch.save({"model": model.state_dict(), "class_names": list(exp.class_names)}, ckpt)
    return exp, ckpt


@pytest.fixture(scope="session")
def make_detecting_checkpoint():
    """detecting_checkpoint itself, for tests that need their own settings."""
    return detecting_checkpoint


@pytest.fixture(scope="session")
def deploy_setup(tmp_path_factory):
    """For the deploy tests (read-only; exports are not cheap, so built once per session)."""
    return detecting_checkpoint(tmp_path_factory.mktemp("deploy"), (4, 4, 3), seed=2)


@pytest.fixture(scope="session")
def eval_setup(tmp_path_factory):
    """For the evaluate tests (read-only); test_conf 0.3 gives tens of detections per image, not
    hundreds, which keeps the tests quick."""
    return detecting_checkpoint(tmp_path_factory.mktemp("evaluate"), (8, 6, 4), seed=3, test_conf=0.3)


@pytest.fixture(scope="session")
def deploy_onnx(deploy_setup, tmp_path_factory):
    """deploy_setup's checkpoint exported to ONNX once (decoded, dynamic batch, parity checked)."""
    import torch

    from yft.deploy.cli import run_export_onnx

    exp, ckpt = deploy_setup
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # see one_thread
    try:
        path, _ = run_export_onnx(exp, ckpt, tmp_path_factory.mktemp("onnx") / "best.onnx", None, True)
    finally:
        torch.set_num_threads(threads)
    return path


@pytest.fixture(scope="session")
def same_detections():
    """assert_same(a, b, atol): two (N, 6) detection arrays hold the same boxes; boxes with
    equal scores (uniform image regions give many) may come in any order."""
    import numpy as np

    def canonical(d):
        return d[np.lexsort(np.round(d, 1).T[::-1])]

    def assert_same(a, b, atol=1e-2):
        assert a.shape == b.shape
        np.testing.assert_allclose(canonical(a), canonical(b), atol=atol)

    return assert_same


@pytest.fixture
def one_thread():
    """torch on one thread for the test: on a busy shared CI machine two spinning OpenMP
    threads make small models many times slower (same results, far less CPU)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
