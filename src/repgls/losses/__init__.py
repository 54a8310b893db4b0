"""Multi-label losses for report-derived labels: bce, focal, gls, pce, anr, db, llr (LLA / LLM), luvit.

Modules: ``functional`` (elementwise functions), ``modules`` (masked loss modules), ``llr`` (large loss
reconsideration), ``registry`` (``register_loss`` / ``create_loss``).

Two layers, one contract:

* plain elementwise functions (``bce``, ``focal``, ``gls``, ``pce``, ``anr``, ``db``) map logits z [B, K]
  and targets [B, K] to a loss per element [B, K]; they compute in float32 whatever the input dtype
  (bf16 / fp16 autocast safe), and are written in the softplus form, finite for any logit and for targets
  outside [0, 1];
* ``create_loss(name, class_counts=None, num_samples=None, **kw) -> nn.Module``, called as
  ``loss(outputs, batch) -> scalar`` with ``outputs = {"logits": [B, K], "rate": [B, K] (LU-ViT)}`` and
  ``batch = {"y": [B, K], "r": [B, K], "mask": [B, K]}`` (``r`` defaults to 0, ``mask`` to 1).

Masking and reduction: mask 0 marks an ignored element (U-Ignore, NaN labels). Ignored targets are zeroed
before use, so NaN there cannot leak into gradients. ``reduction="mean"`` (default) = sum of the loss over
supervised elements / number of supervised elements (the mean over B*K when nothing is masked, which is what
``BCEWithLogitsLoss`` and the LTML / DB code do); ``"sample"`` = mean over a sample's supervised elements,
then mean over samples that have any; ``"sum"``; ``"none"`` returns the masked [B, K] tensor.

Notation: z logit, sigma the sigmoid, softplus(x) = log(1 + e^x), so -log sigma(z) = softplus(-z) and
-log(1 - sigma(z)) = softplus(z). N training images, n_i positives of class i (``class_counts``; take them
from the *train* split), class prior bias v_i = log(N / n_i - 1), so sigma(-v_i) = n_i / N.

Label policies U-Ignore / U-Zeros / U-Ones (CheXpert; PU-RM section 4.3) act on the labels, not the loss:
``repgls rates --policy`` writes them into labels.parquet (U-Ignore -> mask 0, U-Zeros -> y 0, U-Ones ->
y 1). ``create_loss("u-ones")`` etc. return BCE tagged with ``label_policy`` so a trainer can check that the
labels were built with that policy.
"""

from repgls.losses.functional import (
    ANR_VARIANTS,
    anr,
    bce,
    class_bias,
    db,
    db_rebalance_weight,
    focal,
    gls,
    gls_target,
    pce,
)
from repgls.losses.llr import LLR_SCHEDULES, LargeLossReconsideration, llr_k, llr_rate
from repgls.losses.modules import (
    ANRLoss,
    BCELoss,
    DBLoss,
    FocalLoss,
    GLSLoss,
    LUViTLoss,
    MaskedLoss,
    PCELoss,
    reduce_masked,
    targets,
)
from repgls.losses.registry import LOSSES, LossEntry, create_loss, list_losses, register_loss

__all__ = ["ANR_VARIANTS", "LLR_SCHEDULES", "LOSSES", "ANRLoss", "BCELoss", "DBLoss", "FocalLoss", "GLSLoss",
           "LUViTLoss", "LargeLossReconsideration", "LossEntry", "MaskedLoss", "PCELoss", "anr", "bce", "class_bias",
           "create_loss", "db", "db_rebalance_weight", "focal", "gls", "gls_target", "list_losses", "llr_k",
           "llr_rate", "pce", "reduce_masked", "register_loss", "targets"]
