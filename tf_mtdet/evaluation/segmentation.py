"""Semantic segmentation mIoU and pixel accuracy from a confusion matrix.

Model Garden's `official.vision.evaluation.segmentation_metrics` (`MeanIoU`,
`PerClassIoU`, `MeanIoUV2`) are stateful `tf_keras` metrics over TF variables
that expect `masks`/`valid_masks` of shape [B, H, W, 1] plus `image_info`,
always take logits (argmax inside) and average IoU over all classes, absent
ones included; they report no pixel accuracy. For host-side evaluation of
numpy label maps a 64-bit numpy confusion matrix is simpler and exact.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from tf_mtdet.evaluation import utils


class SemanticIoUEvaluator:
  """Accumulates a confusion matrix and reports IoU metrics.

  Result keys: `mIoU` (mean IoU over classes that occur in the ground truth
  or the prediction of the evaluated pixels), `pixel_accuracy`, and
  `IoU/<class name>` for those classes. Values are -1 before any valid
  pixel has been seen.
  """

  def __init__(self,
               num_classes: int,
               ignore_label: int | None = 255,
               class_names: Sequence[str] | None = None):
    """Constructs the evaluator.

    Args:
      num_classes: number of classes C; labels are 0..C-1.
      ignore_label: ground-truth label whose pixels are skipped (None: none).
      class_names: optional C names for the per-class keys (default: index).
    """
    if class_names is not None and len(class_names) != num_classes:
      raise ValueError(f'{len(class_names)} class names given for '
                       f'{num_classes} classes.')
    self._num_classes = int(num_classes)
    self._ignore_label = ignore_label
    self._class_names = ([str(n) for n in class_names] if class_names
                         else [str(i) for i in range(num_classes)])
    self.reset_states()

  @property
  def name(self) -> str:
    return 'semantic_iou'

  @property
  def confusion_matrix(self) -> np.ndarray:
    """[C, C] int64 counts; rows are ground truth, columns prediction."""
    return self._confusion.copy()

  def reset_states(self) -> None:
    """Zeros the confusion matrix."""
    self._confusion = np.zeros([self._num_classes, self._num_classes],
                               np.int64)

  def update_state(self, groundtruths: Mapping[str, Any],
                   predictions: Mapping[str, Any]) -> None:
    """Adds one batch to the confusion matrix.

    Args:
      groundtruths: {'semantic': [B, H, W] (or [B, H, W, 1]) int labels}.
      predictions: {'semantic': [B, H, W] int labels or [B, H, W, C]
        logits/probabilities (argmax over the last axis)}. Must be at the
        ground-truth resolution.

    Raises:
      ValueError: on shape mismatches or out-of-range labels.
    """
    labels = utils.to_numpy(groundtruths['semantic'])
    preds = utils.to_numpy(predictions['semantic'])
    if labels.ndim == 4 and labels.shape[-1] == 1:
      labels = labels[..., 0]
    if preds.ndim == labels.ndim + 1:
      if preds.shape[-1] != self._num_classes:
        raise ValueError(f'Logits have {preds.shape[-1]} channels, expected '
                         f'{self._num_classes}.')
      preds = np.argmax(preds, axis=-1)
    if preds.shape != labels.shape:
      raise ValueError(f'Prediction shape {preds.shape} does not match the '
                       f'ground-truth shape {labels.shape}.')
    labels = labels.reshape([-1]).astype(np.int64)
    preds = preds.reshape([-1]).astype(np.int64)
    valid = np.ones_like(labels, bool)
    if self._ignore_label is not None:
      valid &= labels != self._ignore_label
    labels, preds = labels[valid], preds[valid]
    for what, values in (('ground-truth', labels), ('predicted', preds)):
      if values.size and (values.min() < 0 or
                          values.max() >= self._num_classes):
        raise ValueError(f'{what} labels outside [0, {self._num_classes}).')
    # Row = ground truth, column = prediction.
    self._confusion += np.bincount(
        labels * self._num_classes + preds,
        minlength=self._num_classes ** 2).reshape(self._confusion.shape)

  def evaluate(self) -> dict[str, float]:
    """Computes mIoU, pixel accuracy and per-class IoU."""
    confusion = self._confusion
    total = confusion.sum()
    if total == 0:
      return {'mIoU': -1.0, 'pixel_accuracy': -1.0}
    true_positives = np.diag(confusion).astype(np.float64)
    union = confusion.sum(axis=0) + confusion.sum(axis=1) - true_positives
    present = union > 0  # The class occurs in the ground truth or prediction.
    iou = np.where(present, true_positives / np.maximum(union, 1), 0.0)
    metrics = {
        'mIoU': float(iou[present].mean()),
        'pixel_accuracy': float(true_positives.sum() / total),
    }
    for c in np.nonzero(present)[0]:
      metrics[f'IoU/{self._class_names[c]}'] = float(iou[c])
    return metrics

  def result(self) -> dict[str, float]:
    """Evaluates and resets the state."""
    metrics = self.evaluate()
    self.reset_states()
    return metrics
