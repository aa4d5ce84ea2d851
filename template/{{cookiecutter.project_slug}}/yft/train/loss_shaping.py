"""Label smoothing and focal modulation for YOLOX's objectness and class losses.

YOLOX computes both with `head.bcewithlog_loss` (BCE with logits, no reduction). We swap that
module for one that can smooth class targets (exp.label_smoothing) and down-weight easy
examples (exp.focal_gamma), the guide's remedies for over-confidence and class imbalance, and
that can leave classes out of the class loss (kept classes the training data never shows: their
outputs would only learn "not this class"). With none of these the head is YOLOX's own.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


class ShapedBCE(nn.Module):
    """BCE-with-logits (reduction none) with optional label smoothing and focal modulation.

    Class targets are recognised by their width (num_classes columns, num_classes > 1);
    objectness targets (one column) are never smoothed.
    """

    def __init__(self, num_classes, label_smoothing=0.0, focal_gamma=0.0, ignore_classes=()):
        super().__init__()
        self.num_classes, self.smoothing, self.gamma = num_classes, label_smoothing, focal_gamma
        keep = torch.ones(num_classes)
        keep[list(ignore_classes)] = 0.0
        self.register_buffer("keep", keep if len(ignore_classes) else None, persistent=False)

    def forward(self, logits, targets):
        if self.smoothing and self.num_classes > 1 and targets.shape[-1] == self.num_classes:
            targets = targets * (1.0 - self.smoothing) + 0.5 * self.smoothing
        loss = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        if self.gamma:
            prob = torch.sigmoid(logits)
            p_t = prob * targets + (1 - prob) * (1 - targets)
            loss = loss * (1.0 - p_t).abs().pow(self.gamma)
        if self.keep is not None and targets.shape[-1] == self.num_classes:
            loss = loss * self.keep.to(loss.dtype)
        return loss


def install_loss_shaping(model, exp, ignore_classes=()):
    """Swap the head's BCE when exp asks for smoothing or focal loss, or classes are left out of
    the class loss; return True if swapped."""
    if not (exp.label_smoothing or exp.focal_gamma or ignore_classes):
        return False
    model.head.bcewithlog_loss = ShapedBCE(
        exp.num_classes, exp.label_smoothing, exp.focal_gamma, ignore_classes
    )
    return True
