"""The run's HTML report (`invoke report`): built from real eval output, then opened in a real
headless Chromium (Debian's `chromium` + `chromedriver`, driven by selenium): no console errors,
every image loads, the class filter and the confidence slider change what is drawn.

The browser part skips, with the reason, where chromium, chromedriver or selenium is missing.
A screenshot goes to $YFT_TEST_OUTPUT (if set) and to the test's tmp folder.
"""

import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import pytest
import torch

from yft.evaluate.cli import run_eval, run_report
from yft.project import UserError

CPU = torch.device("cpu")
# A class name that would run script if the page did not escape it.
HOSTILE = '<img src=x onerror="window.pwned=1">"</script><script>window.pwned=2</script>'


@pytest.fixture(scope="module")
def reports(tmp_path_factory, make_detecting_checkpoint):
    """Two runs of one project: a model that detects plenty (every analysis has boxes) and one
    that detects nothing. The last class is named HOSTILE."""
    root = tmp_path_factory.mktemp("report")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        from yft.project import load_exp

        names = list(load_exp().class_names)
        names[-1] = HOSTILE
        exp, ckpt = make_detecting_checkpoint(
            root, (4, 6, 2), seed=4, test_conf=0.3, class_names=tuple(names), report_image_size=160
        )
        run = ckpt.parent
        metrics = run_eval(exp, CPU, ckpt, "val", "torch", 6, progress=False)
        silent = root / "runs" / "silent"
        silent.mkdir()
        state = torch.load(ckpt, weights_only=True)
        for key in state["model"]:
            if "obj_preds" in key and key.endswith("bias"):
                state["model"][key].fill_(-30.0)  # objectness ~ 0: no detection clears test_conf
        torch.save(state, silent / "best.pth")
        empty = run_eval(exp, CPU, silent / "best.pth", "val", "torch", 6, progress=False)
    finally:
        torch.set_num_threads(threads)
    return exp, run, metrics, silent, empty


def page_data(path):
    text = path.read_text(encoding="utf-8")
    match = re.search(r'<script type="application/json" id="browser-data">(.*?)</script>', text, re.S)
    return text, json.loads(match.group(1)) if match else None


def test_eval_writes_the_run_report(reports):
    exp, run, metrics, _, _ = reports
    page, data = page_data(run / "report.html")
    assert metrics["num_detections"] > 0
    for section in (
        'id="settings"',
        'id="data"',
        'id="training"',
        'id="metrics"',
        'id="operating-point"',
        'id="confusion"',
        'id="pr"',
        'id="errors"',
        'id="browser"',
        'id="deploy"',
    ):
        assert section in page
    assert "<script src" not in page and "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    # the browser holds every val image, with the eval's detections (those COCO keeps)
    assert len(data["images"]) == metrics["num_images"] == 6
    assert all(im["src"].startswith("data:image/jpeg;base64,") for im in data["images"])
    dets = json.loads((run / "eval_val_torch" / "detections.json").read_text())
    per_image_class = {}
    for d in dets:
        per_image_class[d["image_id"], d["category_id"]] = (
            per_image_class.get((d["image_id"], d["category_id"]), 0) + 1
        )
    kept = sum(min(n, 100) for n in per_image_class.values())  # COCO keeps 100 per image and class
    assert sum(len(im["det"]) for im in data["images"]) == kept
    # at the eval's confidence the page's counts are the eval's error analysis
    conf = metrics["errors"]["conf"]
    fp = sum(d[5] >= conf and d[6] == 0 for im in data["images"] for d in im["det"])
    assert fp == metrics["errors"]["false_positives"]["total"]
    # the slider starts at the suggested threshold, else where the error analysis was made
    assert data["conf"] == (conf if metrics["suggested_conf"] is None else metrics["suggested_conf"])
    # the hostile class name is text in the page, never markup
    assert HOSTILE not in page and "window.pwned=2</script>" not in page


def test_report_task_and_its_errors(reports, tmp_path, capsys):
    exp, run, _, silent, empty = reports
    path = run_report(exp, str(silent))
    assert f"HTML report: {path}" in capsys.readouterr().out
    page, data = page_data(path)
    assert empty["num_detections"] == 0 and "made no detections" in page
    assert all(not im["det"] for im in data["images"]) and data["images"]
    with pytest.raises(UserError, match="no such folder"):
        run_report(exp, str(tmp_path / "nothing"))
    with pytest.raises(UserError, match="not an `invoke eval` folder"):
        run_report(exp, str(run), eval_dir=str(tmp_path))
    bare = tmp_path / "bare"
    bare.mkdir()
    with pytest.raises(UserError, match="not a run folder"):  # no report.html dropped into any folder
        run_report(exp, str(bare))
    assert not (bare / "report.html").exists()
    (bare / "last.pth").write_bytes(b"")
    page, data = page_data(run_report(exp, str(bare)))  # a run without training log or eval: notes, no crash
    assert data is None and "no evaluation of the val split" in page and "no training log" in page


def test_report_links_other_tasks_results(reports, tmp_path):
    exp, run, _, _, _ = reports
    folder = run.parent / "robustness_val"
    folder.mkdir(exist_ok=True)
    result = {
        "split": "val",
        "checkpoint": str(run / "best.pth"),
        "num_images": 6,
        "severities": [1],
        "clean": {"mAP50_95": 0.5, "mAP50": 0.7},
        "corruptions": {"gaussian_blur": {"1": {"mAP50_95": 0.4, "mAP50": 0.6, "relative_drop": -0.2}}},
        "notes": [],
    }
    (folder / "robustness.json").write_text(json.dumps(result))
    other = tmp_path / "elsewhere.pth"
    (run.parent / "drift").mkdir(exist_ok=True)
    (run.parent / "drift" / "drift.json").write_text(json.dumps({"checkpoint": str(other), "verdict": "x"}))
    (run / "best.onnx").write_bytes(b"0" * 1024)
    try:
        page = run_report(exp, str(run)).read_text(encoding="utf-8")
    finally:
        shutil.rmtree(folder)
        shutil.rmtree(run.parent / "drift")
        (run / "best.onnx").unlink()
    assert 'id="robustness"' in page and "gaussian_blur" in page and "(-20%)" in page
    assert 'id="drift"' not in page  # another model's result stays out
    assert '<a href="best.onnx">best.onnx</a>' in page


@pytest.fixture(scope="module")
def perfect(reports, tmp_path_factory):
    """A run whose eval folder holds the val boxes themselves as detections (score 0.9), analysed
    by eval's own code: every detection correct, nothing missed."""
    from yft.data.coco_io import annotation_path, read_json
    from yft.evaluate import report
    from yft.evaluate.coco_metrics import coco_metrics
    from yft.evaluate.html_report import write_html_report
    from yft.evaluate.run import write_report

    exp = reports[0]
    run = tmp_path_factory.mktemp("perfect") / "train"
    out = run / "eval_val_torch"
    out.mkdir(parents=True)
    (run / "best.pth").write_bytes(b"")
    dataset = read_json(annotation_path(exp, "val"))
    dets = [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9}
        for a in dataset["annotations"]
    ]
    metrics = coco_metrics(dataset, dets, exp.class_names, exp.category_ids())
    metrics.update(
        split="val",
        num_images=len(dataset["images"]),
        num_detections=len(dets),
        backend="torch",
        checkpoint=str(run / "best.pth"),
    )
    metrics, matches, _ = report.analyse(
        metrics, dets, dataset, exp.class_names, exp.category_ids(), exp.class_mode
    )
    write_report(metrics, dets, out)
    path, _ = write_html_report(exp, run, out, "val")
    return path, metrics, dets


def test_correct_detections_are_drawn_as_correct(perfect):
    path, metrics, dets = perfect
    _, data = page_data(path)
    assert metrics["mAP50"] == 1.0 and metrics["suggested_conf"] == 0.9
    assert data["conf"] == 0.9
    states = [d[6] for im in data["images"] for d in im["det"]]
    assert len(states) == len(dets) and set(states) == {1}
    # every box is matched by exactly one detection
    for im in data["images"]:
        assert sorted(d[7] for d in im["det"]) == list(range(len(im["gt"])))


# ---------------------------------------------------------------- in a real browser


def _browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip(
            "no chromium/chromedriver on this machine (Debian: apt-get install chromium chromium-driver)"
        )
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install -e '.[dev]')")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    profile = tempfile.mkdtemp(prefix="yft-chromium-")
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--window-size=1400,1800",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=options), profile


@pytest.fixture(scope="module")
def browser():
    driver, profile = _browser()
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def _open(driver, path):
    driver.get(Path(path).resolve().as_uri())
    deadline = time.time() + 20
    while not driver.execute_script("return Array.from(document.images).every(i => i.complete)"):
        assert time.time() < deadline, "images still loading after 20 s"
        time.sleep(0.1)
    errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert not errors, errors
    broken = driver.execute_script(
        "return Array.from(document.images).filter(i => !i.naturalWidth).map(i => i.alt)"
    )
    assert not broken, f"images that did not load: {broken}"
    assert driver.execute_script("return window.pwned") is None


def _drawn(driver):
    return driver.execute_script("""
        const rects = Array.from(document.querySelectorAll('#grid rect'));
        return {cards: document.querySelectorAll('#grid .card').length,
                dets: rects.filter(r => r.classList.contains('det')).length,
                classes: Array.from(new Set(rects.map(r => r.dataset.cls))).sort(),
                fp: Array.from(document.querySelectorAll('#grid .card')).map(c => Number(c.dataset.fp)),
                summary: document.getElementById('summary').textContent};""")


def _set(driver, element_id, value, event):
    driver.execute_script(
        f"const e = document.getElementById('{element_id}'); e.value = arguments[0];"
        f"e.dispatchEvent(new Event('{event}'));",
        value,
    )


def test_report_in_chromium(reports, browser, tmp_path):
    exp, run, metrics, silent, _ = reports
    _open(browser, run / "report.html")
    start = _drawn(browser)
    assert start["cards"] == 6 and start["dets"] > 0

    # confidence slider: lowest -> every kept detection; highest -> none drawn
    _set(browser, "conf", "0", "input")
    low = _drawn(browser)
    _set(browser, "conf", "1", "input")
    high = _drawn(browser)
    assert low["dets"] >= start["dets"] > high["dets"] == 0
    assert high["summary"] != low["summary"]
    _set(browser, "conf", str(page_data(run / "report.html")[1]["conf"]), "input")

    # class filter: only that class's boxes and detections are drawn
    options = browser.execute_script(
        "return Array.from(document.querySelectorAll('#class-filter option')).map(o => [o.value, o.textContent])"
    )
    assert options[0][0] == "-1" and len(options) - 1 <= len(exp.class_names)
    assert HOSTILE in [text for _, text in options]  # shown as text
    assert len(start["classes"]) >= 2
    shown = []
    for value, _ in options[1:]:
        _set(browser, "class-filter", value, "change")
        drawn = _drawn(browser)
        assert drawn["classes"] in ([], [value]) and drawn["cards"] <= start["cards"]
        shown += drawn["classes"]
    assert len(shown) >= 2  # at least two classes drawn on their own
    _set(browser, "class-filter", "-1", "change")

    # error filter: only images with false positives
    _set(browser, "error-filter", "fp", "change")
    assert all(fp > 0 for fp in _drawn(browser)["fp"])
    _set(browser, "error-filter", "all", "change")

    shot = tmp_path / "report.png"
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1400, min(height + 100, 12000))  # the whole page in one picture
    browser.save_screenshot(str(shot))
    browser.set_window_size(1400, 1800)
    assert shot.stat().st_size > 10_000
    target = os.environ.get("YFT_TEST_OUTPUT")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(target) / f"report_{exp.class_mode}.png")
        shutil.copy(run / "report.html", Path(target) / f"report_{exp.class_mode}.html")
    print(
        f"screenshot {shot} ({shot.stat().st_size} bytes); report {(run / 'report.html').stat().st_size} bytes"
    )

    _open(browser, silent / "report.html")  # a run without detections: notes, no script errors
    assert _drawn(browser)["dets"] == 0


def test_correct_detections_in_chromium(perfect, browser):
    path, metrics, dets = perfect
    _open(browser, path)
    drawn = browser.execute_script("""
        return {tp: document.querySelectorAll('#grid rect.det.tp').length,
                fp: document.querySelectorAll('#grid rect.det.fp').length,
                found: document.querySelectorAll('#grid rect.box.gt').length,
                missed: document.querySelectorAll('#grid rect.box.fn').length};""")
    shown = min(48, metrics["num_images"])  # the first page of cards
    assert shown == metrics["num_images"]
    assert drawn == {"tp": len(dets), "fp": 0, "found": len(dets), "missed": 0}
    _set(browser, "conf", "0.95", "input")  # above every score: all boxes missed
    missed = browser.execute_script("return document.querySelectorAll('#grid rect.box.fn').length")
    assert missed == len(dets)
