"""The batched SimOTA loss (yft.train.fast_loss) against YOLOX's own per-image code.

The reference is YOLOX 0.3.0's `YOLOXHead` itself, with one change (`TieBrokenHead`): a box's
dynamic_k cheapest anchors are picked by a stable sort, so exact cost ties go to the lowest
anchor index instead of wherever `torch.topk` puts them. Assignments must be identical; loss
parts and gradients equal up to the summation order of float32 sums.
"""

import copy
import io

import pytest
import torch
import torch.nn.functional as F
from yolox.models.yolo_head import YOLOXHead

from yft.train.fast_loss import (
    FastLossHead,
    batched_get_losses,
    install_fast_loss,
    is_fast_loss_installed,
    simota_assign,
    uninstall_fast_loss,
)

STRIDES = (8, 16, 32)
# The batched sums add zeros for padding and run in another order than YOLOX's: measured
# worst cases over many random batches were 2.1e-7 (loss parts) and 9e-7 (gradients), relative.
LOSS_RTOL, GRAD_RTOL, GRAD_ATOL = 1e-6, 5e-6, 1e-9


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small tensors: one thread is faster, and much faster on a busy machine (no OpenMP spin)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class TieBrokenHead(YOLOXHead):
    """YOLOX's head; only the top-k of `dynamic_k_matching` breaks cost ties by anchor index."""

    def dynamic_k_matching(self, cost, pair_wise_ious, gt_classes, num_gt, fg_mask):
        # YOLOX 0.3.0's code, except the marked line.
        matching_matrix = torch.zeros_like(cost, dtype=torch.uint8)
        ious_in_boxes_matrix = pair_wise_ious
        n_candidate_k = min(10, ious_in_boxes_matrix.size(1))
        topk_ious, _ = torch.topk(ious_in_boxes_matrix, n_candidate_k, dim=1)
        dynamic_ks = torch.clamp(topk_ious.sum(1).int(), min=1)
        dynamic_ks = dynamic_ks.tolist()
        for gt_idx in range(num_gt):
            pos_idx = torch.sort(cost[gt_idx], stable=True).indices[: dynamic_ks[gt_idx]]  # changed
            matching_matrix[gt_idx][pos_idx] = 1
        anchor_matching_gt = matching_matrix.sum(0)
        if (anchor_matching_gt > 1).sum() > 0:
            _, cost_argmin = torch.min(cost[:, anchor_matching_gt > 1], dim=0)
            matching_matrix[:, anchor_matching_gt > 1] *= 0
            matching_matrix[cost_argmin, anchor_matching_gt > 1] = 1
        fg_mask_inboxes = matching_matrix.sum(0) > 0
        num_fg = fg_mask_inboxes.sum().item()
        fg_mask[fg_mask.clone()] = fg_mask_inboxes
        matched_gt_inds = matching_matrix[:, fg_mask_inboxes].argmax(0)
        gt_matched_classes = gt_classes[matched_gt_inds]
        pred_ious_this_matching = (matching_matrix * pair_wise_ious).sum(0)[fg_mask_inboxes]
        return num_fg, gt_matched_classes, pred_ious_this_matching, matched_gt_inds


def grids(size):
    """x_shifts, y_shifts, expanded_strides as YOLOXHead passes them to get_losses."""
    xs, ys, ss = [], [], []
    for s in STRIDES:
        yv, xv = torch.meshgrid(torch.arange(size // s), torch.arange(size // s), indexing="ij")
        xs.append(xv.reshape(1, -1).float())
        ys.append(yv.reshape(1, -1).float())
        ss.append(torch.full((1, xv.numel()), float(s)))
    return xs, ys, ss


def random_batch(gen, size, counts, num_classes, boxes="mixed", logits="random"):
    """Decoded head outputs [B, A, 5 + C], raw box outputs, and padded labels [B, 50, 5]."""
    xs, ys, ss = (torch.cat(t, 1)[0] for t in grids(size))
    B, A = len(counts), xs.numel()
    raw = torch.randn(B, A, 4, generator=gen) * 0.6
    raw[..., 2:] += 0.7
    box = torch.cat(
        [(raw[..., :2] + torch.stack([xs, ys], -1)) * ss[:, None], raw[..., 2:].exp() * ss[:, None]], -1
    )
    if logits == "init":  # a fresh head: every anchor nearly alike, so costs tie a lot
        scores = -4.6 + 0.01 * torch.randn(B, A, 1 + num_classes, generator=gen)
    else:
        scores = 2.0 * torch.randn(B, A, 1 + num_classes, generator=gen)
    labels = torch.zeros(B, 50, 5)
    for b, n in enumerate(counts):
        u = torch.rand(n, 4, generator=gen)
        if boxes == "crowded":  # everything piled into one corner of the image
            centre, wh = size * (0.15 + 0.2 * u[:, :2]), size * (0.05 + 0.3 * u[:, 2:])
        elif boxes == "tiny":  # smaller than the finest stride
            centre, wh = size * (0.05 + 0.9 * u[:, :2]), 1.0 + 5.0 * u[:, 2:]
        else:
            centre, wh = size * (0.05 + 0.9 * u[:, :2]), size * (0.01 + 0.6 * u[:, 2:] ** 2)
        labels[b, :n, 0] = torch.randint(num_classes, (n,), generator=gen).float()
        labels[b, :n, 1:3], labels[b, :n, 3:5] = centre, wh
    return torch.cat([box, scores], -1), raw, labels


def reference_assignments(head, outputs, labels, size):
    """YOLOX's own per-image get_assignments: fg [B, A], matched gt [B, A], pred IoU [B, A]."""
    xs, ys, ss = (torch.cat(t, 1).to(outputs.device) for t in grids(size))
    B, A = outputs.shape[:2]
    bbox, obj, cls = outputs[:, :, :4], outputs[:, :, 4:5], outputs[:, :, 5:]
    fg = torch.zeros(B, A, dtype=torch.bool, device=outputs.device)
    matched = torch.zeros(B, A, dtype=torch.int64, device=outputs.device)
    ious = torch.zeros(B, A, device=outputs.device)
    nlabel = (labels.sum(dim=2) > 0).sum(dim=1)
    for b in range(B):
        n = int(nlabel[b])
        if n:
            _, mask, iou, gt, _ = head.get_assignments(
                b,
                n,
                A,
                labels[b, :n, 1:5],
                labels[b, :n, 0],
                bbox[b],
                ss,
                xs,
                ys,
                cls,
                bbox,
                obj,
                labels,
                None,
            )
            fg[b], matched[b, mask], ious[b, mask] = mask, gt, iou
    return fg, matched, ious


def fast_assignments(outputs, labels, size, num_classes, compact=None):
    xs, ys, ss = (torch.cat(t, 1)[0].to(outputs.device) for t in grids(size))
    nlabel = (labels.sum(dim=2) > 0).sum(dim=1)
    G = max(int(nlabel.max()), 1)
    valid = torch.arange(G, device=labels.device) < nlabel[:, None]
    return simota_assign(
        labels[:, :G, 1:5],
        labels[:, :G, 0].long(),
        valid,
        outputs[:, :, :4],
        outputs[:, :, 5:],
        outputs[:, :, 4:5],
        xs,
        ys,
        ss,
        num_classes,
        compact=compact,
    )


def assert_same_assignments(ours, ref):
    fg, matched, ious = ours
    ref_fg, ref_matched, ref_ious = ref
    assert torch.equal(fg, ref_fg)
    assert torch.equal(matched[fg], ref_matched[fg])
    assert torch.equal(ious[fg], ref_ious[fg])  # bit for bit


CASES = {
    # name: (input size, targets per image, classes, box kind, logits)
    "varied": (128, [0, 1, 7, 23], 5, "mixed", "random"),
    "fresh-head-ties": (128, [3, 12, 30], 5, "mixed", "init"),
    "crowded": (128, [40, 45], 3, "crowded", "random"),
    "tiny": (96, [9, 0, 15], 4, "tiny", "init"),
    "many-classes": (96, [2, 11, 5], 80, "mixed", "random"),
    "all-empty": (64, [0, 0], 5, "mixed", "random"),
}


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("compact", [True, False], ids=["candidates-only", "all-anchors"])
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", list(CASES))
def test_assignments_identical_to_yolox(case, device, compact):
    size, counts, C, boxes, logits = CASES[case]
    gen = torch.Generator().manual_seed(sorted(CASES).index(case))
    outputs, _, labels = (t.to(device) for t in random_batch(gen, size, counts, C, boxes, logits))
    ref = reference_assignments(TieBrokenHead(C, width=0.125), outputs, labels, size)
    assert_same_assignments(fast_assignments(outputs, labels, size, C, compact), ref)
    assert int(ref[0].sum()) > 0 or sum(counts) == 0


def run_losses(head, loss_fn, outputs, raw, labels, size, dtype=torch.float32):
    out = outputs.clone().requires_grad_()
    origin = raw.clone().requires_grad_()
    xs, ys, ss = (tuple(t.to(dtype) for t in g) for g in grids(size))  # the head's grid dtype
    parts = loss_fn(head, None, xs, ys, ss, labels, out, [origin], dtype)
    parts[0].backward()
    return [float(p.detach()) if torch.is_tensor(p) else p for p in parts], out.grad, origin.grad


@pytest.mark.parametrize("use_l1", [False, True])
@pytest.mark.parametrize("case", ["varied", "fresh-head-ties", "many-classes", "all-empty"])
def test_losses_and_gradients_match_yolox(case, use_l1):
    size, counts, C, boxes, logits = CASES[case]
    gen = torch.Generator().manual_seed(100 + sorted(CASES).index(case))
    outputs, raw, labels = random_batch(gen, size, counts, C, boxes, logits)
    head = TieBrokenHead(C, width=0.125)
    head.use_l1 = use_l1
    ref = run_losses(head, TieBrokenHead.get_losses, outputs, raw, labels, size)
    ours = run_losses(head, batched_get_losses, outputs, raw, labels, size)
    # total, iou, obj, cls, l1, num_fg / num_gts
    assert ours[0] == pytest.approx(ref[0], rel=LOSS_RTOL, abs=1e-12)
    torch.testing.assert_close(ours[1], ref[1], rtol=GRAD_RTOL, atol=GRAD_ATOL)
    if use_l1:
        torch.testing.assert_close(ours[2], ref[2], rtol=GRAD_RTOL, atol=GRAD_ATOL)


@pytest.mark.parametrize("amp", [torch.float16, torch.bfloat16])
def test_half_precision_outputs_match_yolox(amp):
    """Under autocast the head's outputs arrive in half precision: same dtype flow as YOLOX."""
    size, counts, C, boxes, logits = CASES["varied"]
    gen = torch.Generator().manual_seed(11)
    outputs, raw, labels = random_batch(gen, size, counts, C, boxes, logits)
    outputs, raw = outputs.to(amp), raw.to(amp)
    head = TieBrokenHead(C, width=0.125)
    head.use_l1 = True
    with torch.autocast("cpu", dtype=amp):
        ref = run_losses(head, TieBrokenHead.get_losses, outputs, raw, labels, size, amp)
        ours = run_losses(head, batched_get_losses, outputs, raw, labels, size, amp)
        assert_same_assignments(
            fast_assignments(outputs, labels, size, C), reference_assignments(head, outputs, labels, size)
        )
    assert ours[0] == pytest.approx(ref[0], rel=LOSS_RTOL, abs=1e-12)
    assert ours[1].dtype == ref[1].dtype == amp
    torch.testing.assert_close(ours[1], ref[1])  # at the half type's own tolerance
    torch.testing.assert_close(ours[2], ref[2])


def test_chunking_over_the_batch_changes_nothing():
    size, counts, C, boxes, logits = CASES["varied"]
    gen = torch.Generator().manual_seed(7)
    outputs, raw, labels = random_batch(gen, size, counts, C, boxes, logits)
    head = install_fast_loss(YOLOXHead(C, width=0.125))
    whole = run_losses(head, batched_get_losses, outputs, raw, labels, size)
    head.chunk_elements = 1  # one image at a time
    chunked = run_losses(head, batched_get_losses, outputs, raw, labels, size)
    assert whole[0] == chunked[0] and torch.equal(whole[1], chunked[1])


@pytest.fixture(scope="module")
def real_batch(tmp_path_factory):
    """A real model of this project and a letterboxed batch of its sample dataset."""
    from yolox.data import COCODataset, TrainTransform

    from yft.data.sample import make_sample_dataset
    from yft.project import load_exp

    exp = load_exp()
    exp.set_architecture("yolox_nano")  # whatever this project's size: keep the test quick
    exp.data_dir = str(tmp_path_factory.mktemp("fast_loss") / "data")
    make_sample_dataset(exp, counts=(4, 1, 1), seed=3)
    dataset = COCODataset(
        data_dir=exp.data_dir,
        json_file=exp.train_ann,
        name=exp.train_name,
        img_size=(96, 96),
        preproc=TrainTransform(max_labels=50),
    )
    items = [dataset[i] for i in range(4)]
    images = torch.stack([torch.from_numpy(item[0]) for item in items])
    labels = torch.stack([torch.from_numpy(item[1]) for item in items]).float()
    labels[0] = 0  # one negative image
    torch.manual_seed(0)
    return exp.get_model(), images, labels


class Capture(TieBrokenHead):
    """The reference head, keeping the arguments of its last get_losses call."""

    def get_losses(self, *args, **kwargs):
        self.captured = args
        return super().get_losses(*args, **kwargs)


@pytest.mark.parametrize("amp", [None, torch.bfloat16])
def test_real_model_step_matches_yolox(real_batch, amp):
    model, images, labels = real_batch
    model = copy.deepcopy(model)
    results = []
    for fast in (False, True):
        if fast:
            model.head.__class__ = YOLOXHead
            install_fast_loss(model)
        else:
            model.head.__class__ = Capture
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=amp or torch.float32, enabled=amp is not None):
            out = model(images, labels)
        out["total_loss"].backward()
        grads = [p.grad.clone() for p in model.head.cls_preds.parameters()]
        losses = {k: float(v.detach()) if torch.is_tensor(v) else v for k, v in out.items()}
        results.append((losses, grads))
    (ref, ref_grads), (ours, our_grads) = results
    assert ours == pytest.approx(ref, rel=LOSS_RTOL if amp is None else 1e-5, abs=1e-12)
    for a, b in zip(our_grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=GRAD_RTOL if amp is None else 1e-4, atol=1e-7)

    # The assignment itself, on the exact tensors the head saw (outputs in the autocast dtype).
    head = model.head
    _, xs, ys, ss, lab, outputs, _ = head.captured
    with torch.autocast("cpu", dtype=amp or torch.float32, enabled=amp is not None):
        ref_assign = reference_assignments(
            TieBrokenHead(head.num_classes, width=0.125), outputs.detach(), lab, images.shape[-1]
        )
        ours_assign = fast_assignments(outputs.detach(), lab, images.shape[-1], head.num_classes)
    assert_same_assignments(ours_assign, ref_assign)


def test_install_swaps_only_the_loss_path():
    head = YOLOXHead(4, width=0.125)
    model = torch.nn.Module()
    model.head = head
    keys = list(head.state_dict())
    assert install_fast_loss(model) is head and is_fast_loss_installed(model)
    assert install_fast_loss(head) is head and type(head).__mro__.count(FastLossHead) == 1
    assert list(head.state_dict()) == keys
    twin = copy.deepcopy(head)  # what ModelEMA does
    assert is_fast_loss_installed(twin) and twin.get_losses.__self__ is twin
    buffer = io.BytesIO()
    torch.save(head, buffer)
    buffer.seek(0)
    assert is_fast_loss_installed(torch.load(buffer, weights_only=False))
    assert type(uninstall_fast_loss(model)) is YOLOXHead and not is_fast_loss_installed(head)
    assert type(uninstall_fast_loss(model)) is YOLOXHead

    class Custom(YOLOXHead):
        def dynamic_k_matching(self, *args):
            return super().dynamic_k_matching(*args)

    with pytest.raises(TypeError, match="dynamic_k_matching"):
        install_fast_loss(Custom(4, width=0.125))
    with pytest.raises(TypeError, match="YOLOX"):
        install_fast_loss(torch.nn.Linear(2, 2))


def test_one_hot_classes_match_yolox_bce():
    """The cost rows are built from BCE against all-zeros / all-ones: check that identity here."""
    p = torch.rand(7, 5)
    target = F.one_hot(torch.tensor([0, 4, 2, 2, 1, 3, 0]), 5).float()
    direct = F.binary_cross_entropy(p, target, reduction="none")
    pos = F.binary_cross_entropy(p, p.new_ones(()).expand_as(p), reduction="none")
    neg = F.binary_cross_entropy(p, p.new_zeros(()).expand_as(p), reduction="none")
    assembled = torch.where(target.bool(), pos, neg)
    assert torch.equal(direct, assembled)
