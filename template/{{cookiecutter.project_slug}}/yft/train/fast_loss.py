"""Batched SimOTA assignment and loss: a drop-in for YOLOX 0.3.0's `YOLOXHead.get_losses`.

YOLOX computes its training loss image by image: for each image a Python loop builds the geometry
prior, the cost matrix and the dynamic-k matching (`get_assignments`), with a dozen host syncs
each. On a GPU that loop, not the network, is most of a training step. This module does the same
computation for all images of the batch at once, on [batch, gt slot, anchor] tensors padded to the
batch's largest box count, with one host sync per step on GPUs (reading the box counts; on CPU,
where syncs cost nothing, it also reads the candidate anchors to skip work on the others).

Contract
--------
``install_fast_loss(model) -> head``
    `model`: a yolox `YOLOX` model or its `YOLOXHead` (a DistributedDataParallel or torch.compile
    wrapper is looked through; install before compiling). Swaps the head's class for a subclass
    whose only change is `get_losses` (`batched_get_losses` below); the model's forward still
    returns YOLOX's dict (total_loss, iou_loss, conf_loss, cls_loss, l1_loss, num_fg).
    Parameters, buffers, state_dict, eval-mode outputs, ONNX export, `copy.deepcopy` (EMA) and
    pickling are untouched. Installing twice is a no-op. A subclass of `YOLOXHead` gets a subclass
    of its own class, unless it overrides the loss path itself (then TypeError). Returns the head.
``uninstall_fast_loss(model) -> head``
    Restores the head's original class: the official per-image loss is back (no-op if not
    installed).
``is_fast_loss_installed(model) -> bool``

Typical use, behind an Exp flag:  ``if exp.fast_loss: install_fast_loss(model)``.

What stays the same as the official head, and what differs:
- Same assignment (geometry prior, cost matrix, dynamic k, conflict resolution) and the same loss
  parts. The one deliberate difference: YOLOX picks each box's `dynamic_k` cheapest anchors with
  `torch.topk`, which breaks exact cost ties arbitrarily (and ties are common: costs >= 1e5 sit
  0.0078 apart in float32). Here ties go to the lowest anchor index. With that rule applied to
  YOLOX's own code, assignments are identical and loss parts and gradients agree to float
  rounding of the sums (worst seen: 2.1e-7 and 9e-7 relative; tests/test_fast_loss.py, on CPU).
  On CUDA the per-row class sum may round differently from YOLOX's smaller tensors; the test
  repeats the assignment check on CUDA when one is present.
- Mixed precision as in YOLOX: the classification part of the cost is computed in float32 with CUDA
  autocast disabled (YOLOX's `torch.cuda.amp.autocast(enabled=False)`); IoUs, geometry and the loss
  run under the caller's autocast with the same dtypes as the official code.
- The returned `num_fg` ratio is a 0-dim tensor (YOLOX returns a Python float), so the step does
  not wait for it; `float()` it when logging.
- Memory: the [batch, gt, anchor, class] cost rows are built for a slice of the batch at a time
  (at most `head.chunk_elements` floats, 2**26 = 256 MiB, by default; set it on the head to
  trade memory for fewer slices). The other assignment tensors are [batch, gt, anchor].
- Works on any device torch supports these ops on (CPU, CUDA; MPS untested).
"""

import torch
import torch.nn.functional as F
from yolox.models.yolo_head import YOLOXHead

# A box can never take more than 10 anchors: dynamic k is the sum of its 10 best IoUs (each <= 1).
MAX_K = 10
CENTER_RADIUS = 2.5
REG_WEIGHT = 5.0
# Largest [image slice, gt, anchor, class] cost tensor built at once (2**26 float32: 256 MiB).
CHUNK_ELEMENTS = 1 << 26
_INT64_MAX = torch.iinfo(torch.int64).max


def _sortable_key(cost):
    """Exact, unique int64 keys ordered like (cost, anchor index): ties go to the lowest index."""
    bits = (cost + 0.0).contiguous().view(torch.int32)  # + 0.0 turns -0.0 into +0.0
    bits = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits)  # float order == signed int order
    index = torch.arange(cost.shape[-1], device=cost.device)
    return bits.to(torch.int64) * (1 << 32) + index


def _bce_rows(cls_preds, obj_preds, gt_classes, classes):
    """Summed BCE rows for anchors [..., C] against gts [..., G] of the same leading shape."""
    p = (cls_preds.float().sigmoid() * obj_preds.float().sigmoid()).sqrt()
    neg = F.binary_cross_entropy(p, p.new_zeros(()).expand_as(p), reduction="none")
    pos = F.binary_cross_entropy(p, p.new_ones(()).expand_as(p), reduction="none")
    del p
    if len(classes) <= gt_classes.shape[-1]:  # one row per class, then pick each gt's
        eye = classes[:, None] == classes[None, :]  # [class of the row, class]
        rows = torch.where(eye, pos[..., None, :], neg[..., None, :]).sum(-1)  # [..., C]
        return rows.gather(-1, gt_classes)
    onehot = gt_classes[..., None] == classes  # [..., G, C]
    return torch.where(onehot, pos[..., None, :], neg[..., None, :]).sum(-1)  # [..., G]


def _cls_cost(
    cls_preds, obj_preds, gt_classes, num_classes, candidate, chunk_elements=CHUNK_ELEMENTS, compact=None
):
    """[b, G, A]: YOLOX's classification cost at the candidate anchors, bit for bit.

    YOLOX sums BCE(sqrt(sigmoid(cls) * sigmoid(obj)), one_hot(gt class)) over the classes. The
    rows differ between gts only in the gt's class, so each row is assembled from the BCE against
    all-zeros and against all-ones, then summed over the same contiguous class axis YOLOX sums.
    With no more classes than box slots, one row per class is summed and gathered (cheaper).
    Rows are built for at most `chunk_elements` floats at a time. compact (default: on CPU,
    where reading the candidate count costs nothing) builds rows for the candidate anchors only;
    otherwise for every anchor, with no host sync. Non-candidate entries are meaningless.
    """
    B, G = gt_classes.shape
    A, C = cls_preds.shape[1], num_classes
    classes = torch.arange(C, device=cls_preds.device)
    row = C * min(C, G)  # floats per anchor: a row per gt, or per class when fewer
    if compact is None:
        compact = cls_preds.device.type == "cpu"
    with torch.autocast("cuda", enabled=False):  # as YOLOX: torch.cuda.amp.autocast(enabled=False)
        if compact:
            cost = torch.zeros(B, G, A, device=cls_preds.device)
            b_idx, a_idx = candidate.nonzero(as_tuple=True)
            step = max(1, chunk_elements // row)
            for s in range(0, len(b_idx), step):
                bi, ai = b_idx[s : s + step], a_idx[s : s + step]
                cost[bi, :, ai] = _bce_rows(cls_preds[bi, ai], obj_preds[bi, ai], gt_classes[bi], classes)
            return cost
        cost = torch.empty(B, G, A, device=cls_preds.device)
        step = max(1, chunk_elements // (A * row))
        for s in range(0, B, step):
            part = slice(s, s + step)
            index = gt_classes[part, None, :].expand(-1, A, -1)
            cost[part] = _bce_rows(cls_preds[part], obj_preds[part], index, classes).transpose(1, 2)
    return cost


def _pairwise_iou(gt, pred):
    """`yolox.utils.bboxes_iou(gt, pred, xyxy=False)` for [b, G, 4] x [b, A, 4], same op order."""
    a, b = gt[:, :, None, :], pred[:, None, :, :]
    tl = torch.max(a[..., :2] - a[..., 2:] / 2, b[..., :2] - b[..., 2:] / 2)
    br = torch.min(a[..., :2] + a[..., 2:] / 2, b[..., :2] + b[..., 2:] / 2)
    area_a = torch.prod(gt[..., 2:], -1)[:, :, None]
    area_b = torch.prod(pred[..., 2:], -1)[:, None, :]
    en = (tl < br).to(tl.dtype).prod(dim=-1)
    area_i = torch.prod(br - tl, -1) * en
    return area_i / (area_a + area_b - area_i)


def _geometry(gt, x_centers, y_centers, strides):
    """YOLOX's `get_in_boxes_info`, batched: (in box, in centre region), each [b, G, A]."""
    cx, cy, w, h = (gt[..., i, None] for i in range(4))
    in_box = (
        ((x_centers - (cx - 0.5 * w)) > 0.0)
        & ((y_centers - (cy - 0.5 * h)) > 0.0)
        & (((cx + 0.5 * w) - x_centers) > 0.0)
        & (((cy + 0.5 * h) - y_centers) > 0.0)
    )
    radius = CENTER_RADIUS * strides
    in_center = (
        ((x_centers - (cx - radius)) > 0.0)
        & ((y_centers - (cy - radius)) > 0.0)
        & (((cx + radius) - x_centers) > 0.0)
        & (((cy + radius) - y_centers) > 0.0)
    )
    return in_box, in_center


@torch.no_grad()
def simota_assign(
    gt_boxes,
    gt_classes,
    valid,
    bbox_preds,
    cls_preds,
    obj_preds,
    x_shifts,
    y_shifts,
    strides,
    num_classes,
    chunk_elements=CHUNK_ELEMENTS,
    compact=None,
):
    """SimOTA for all images at once, no host sync.

    gt_boxes [b, G, 4] (cx, cy, w, h), gt_classes [b, G] int64, valid [b, G] bool (padding slots
    False); predictions [b, A, 4 / C / 1] as the head decodes them; x_shifts, y_shifts, strides [A]
    (grid cell and stride of each anchor); chunk_elements, compact: see `_cls_cost`. Returns
    fg [b, A] bool, matched gt slot [b, A] int64 (meaningful where fg) and the IoU of each anchor
    with its matched gt [b, A].
    """
    b, G = gt_classes.shape
    A = bbox_preds.shape[1]
    x_centers = x_shifts * strides + 0.5 * strides
    y_centers = y_shifts * strides + 0.5 * strides
    in_box, in_center = _geometry(gt_boxes, x_centers, y_centers, strides)
    candidate = ((in_box | in_center) & valid[:, :, None]).any(1)  # [b, A]: YOLOX's first fg_mask
    box_and_center = in_box & in_center
    del in_box, in_center

    ious = _pairwise_iou(gt_boxes, bbox_preds)
    cost = (
        _cls_cost(cls_preds, obj_preds, gt_classes, num_classes, candidate, chunk_elements, compact)
        + 3.0 * -torch.log(ious + 1e-8)
        + 100000.0 * (~box_and_center)
    )
    del box_and_center

    # Dynamic k: the sum of each box's 10 best candidate IoUs (values only: ties do not matter).
    k = min(MAX_K, A)
    top_ious = torch.where(candidate[:, None, :], ious, 0.0).topk(k, dim=-1).values
    dynamic_k = top_ious.sum(-1).int().clamp(min=1)  # [b, G]
    # Each box takes its dynamic_k cheapest candidates; exact ties go to the lowest anchor index.
    key = torch.where(candidate[:, None, :], _sortable_key(cost), _INT64_MAX)
    picked = key.topk(k, dim=-1, largest=False).indices  # [b, G, k], cheapest first
    del key
    take = torch.arange(k, device=picked.device) < dynamic_k[..., None]
    take &= valid[..., None] & candidate.gather(1, picked.view(b, -1)).view(b, G, k)
    matching = torch.zeros(b, G, A, dtype=torch.uint8, device=picked.device)
    matching.scatter_(2, picked, take.to(torch.uint8))

    # An anchor taken by several boxes goes to the box with the lowest cost (first one on ties).
    n_matches = matching.sum(1)  # [b, A]
    fg = n_matches > 0
    cheapest = torch.where(valid[:, :, None], cost, torch.inf).argmin(1)
    matched = torch.where(n_matches > 1, cheapest, matching.argmax(1))
    pred_ious = ious.gather(1, matched[:, None, :]).squeeze(1)
    return fg, matched, pred_ious


def batched_get_losses(
    self, imgs, x_shifts, y_shifts, expanded_strides, labels, outputs, origin_preds, dtype
):
    """`YOLOXHead.get_losses` for the whole batch at once (same arguments, same returns)."""
    bbox_preds = outputs[:, :, :4]
    obj_preds = outputs[:, :, 4:5]
    cls_preds = outputs[:, :, 5:]
    B, A = outputs.shape[:2]
    C = self.num_classes

    nlabel = (labels.sum(dim=2) > 0).sum(dim=1)
    counts = nlabel.tolist()  # the step's one host sync: how far to trim the padded box slots
    G, num_gts = max(counts, default=0), sum(counts)

    x_shifts = torch.cat(x_shifts, 1)[0]
    y_shifts = torch.cat(y_shifts, 1)[0]
    strides = torch.cat(expanded_strides, 1)[0]

    gt_boxes, gt_classes = labels[:, :G, 1:5], labels[:, :G, 0].to(torch.int64)
    if G > 0:
        valid = torch.arange(G, device=labels.device) < nlabel[:, None]
        fg, matched, pred_ious = simota_assign(
            gt_boxes,
            gt_classes,
            valid,
            bbox_preds.detach(),
            cls_preds.detach(),
            obj_preds.detach(),
            x_shifts,
            y_shifts,
            strides,
            C,
            getattr(self, "chunk_elements", CHUNK_ELEMENTS),
        )
    else:
        fg = torch.zeros(B, A, dtype=torch.bool, device=outputs.device)
        matched = torch.zeros(B, A, dtype=torch.int64, device=outputs.device)
        pred_ious = torch.zeros(B, A, device=outputs.device)

    # Gather the foreground anchors of each image into [B, K] slots (K: a bound known on the host).
    K = min(A, MAX_K * G)
    slots = torch.sort(fg.to(torch.uint8), dim=1, descending=True, stable=True).indices[:, :K]
    mask = fg.gather(1, slots)  # [B, K]: slot holds a foreground anchor
    gt_of_slot = matched.gather(1, slots)
    reg_targets = gt_boxes.gather(1, gt_of_slot[..., None].expand(-1, -1, 4))
    slot_ious = pred_ious.gather(1, slots)[..., None]
    cls_targets = F.one_hot(gt_classes.gather(1, gt_of_slot), C) * slot_ious

    num_fg = fg.sum().clamp(min=1).to(torch.float32)
    pick = lambda t: t.gather(1, slots[..., None].expand(-1, -1, t.shape[-1]))  # noqa: E731
    iou_losses = self.iou_loss(pick(bbox_preds).reshape(-1, 4), reg_targets.reshape(-1, 4))
    loss_iou = torch.where(mask.reshape(-1), iou_losses, 0.0).sum() / num_fg
    obj_targets = fg.reshape(-1, 1).to(dtype)
    loss_obj = self.bcewithlog_loss(obj_preds.reshape(-1, 1), obj_targets).sum() / num_fg
    loss_cls = (
        torch.where(mask[..., None], self.bcewithlog_loss(pick(cls_preds), cls_targets), 0.0).sum() / num_fg
    )
    if self.use_l1:
        stride = strides[slots]
        l1_targets = torch.stack(
            [
                reg_targets[..., 0] / stride - x_shifts[slots],
                reg_targets[..., 1] / stride - y_shifts[slots],
                torch.log(reg_targets[..., 2] / stride + 1e-8),
                torch.log(reg_targets[..., 3] / stride + 1e-8),
            ],
            -1,
        ).to(outputs.dtype)  # YOLOX fills a tensor of the outputs' dtype
        loss_l1 = (
            torch.where(
                mask[..., None], self.l1_loss(pick(torch.cat(origin_preds, 1)), l1_targets), 0.0
            ).sum()
            / num_fg
        )
    else:
        loss_l1 = 0.0

    loss = REG_WEIGHT * loss_iou + loss_obj + loss_cls + loss_l1
    return loss, REG_WEIGHT * loss_iou, loss_obj, loss_cls, loss_l1, num_fg / max(num_gts, 1)


class FastLossHead:
    """Mixin: the batched loss path. Only `get_losses` changes."""

    chunk_elements = CHUNK_ELEMENTS
    get_losses = batched_get_losses


class FastYOLOXHead(FastLossHead, YOLOXHead):
    """YOLOXHead with the batched loss (what `install_fast_loss` swaps a plain head to)."""


_FAST_CLASSES = {YOLOXHead: FastYOLOXHead}
_LOSS_METHODS = ("get_losses", "get_assignments", "get_in_boxes_info", "dynamic_k_matching")


def _head(model):
    model = getattr(model, "module", model)  # DistributedDataParallel wraps the model
    head = getattr(model, "head", model)
    if not isinstance(head, YOLOXHead):
        raise TypeError(f"expected a yolox YOLOX model or YOLOXHead, got {type(head).__name__}")
    return head


def install_fast_loss(model):
    """Swap the head of `model` (a YOLOX model or its head) to the batched loss; return the head."""
    head = _head(model)
    cls = type(head)
    if issubclass(cls, FastLossHead):
        return head
    if cls not in _FAST_CLASSES:
        overridden = [m for m in _LOSS_METHODS if getattr(cls, m) is not getattr(YOLOXHead, m)]
        if overridden:
            raise TypeError(
                f"{cls.__name__} overrides {', '.join(overridden)}: the batched loss "
                "would silently drop that change; keep the official loss path"
            )
        _FAST_CLASSES[cls] = type(f"Fast{cls.__name__}", (FastLossHead, cls), {})
    head.__class__ = _FAST_CLASSES[cls]
    return head


def uninstall_fast_loss(model):
    """Restore the official per-image loss of `model`'s head; returns the head."""
    head = _head(model)
    if isinstance(head, FastLossHead):
        head.__class__ = next(c for c in type(head).__mro__[1:] if not issubclass(c, FastLossHead))
    return head


def is_fast_loss_installed(model):
    return isinstance(_head(model), FastLossHead)
