"""Pascal VOC mean average precision at a single IoU threshold."""

from __future__ import annotations

import collections
import json
from typing import Any, Mapping

import numpy as np
import tensorflow as tf

from tf_mtdet.evaluation import utils


def _iou_one_to_many(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
  """IoU of one [xmin, ymin, xmax, ymax] box with [K, 4] boxes.

  Continuous pixel coordinates: a box's area is (xmax - xmin) * (ymax - ymin),
  without the "+1" of the original VOC devkit (which assumed integer pixel
  indices; COCO-format boxes are continuous).
  """
  inter_w = np.maximum(
      np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0.0)
  inter_h = np.maximum(
      np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0.0)
  intersection = inter_w * inter_h
  area = (box[2] - box[0]) * (box[3] - box[1])
  areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
  union = area + areas - intersection
  return np.where(union > 0, intersection / np.maximum(union, 1e-12), 0.0)


def average_precision(recall: np.ndarray, precision: np.ndarray,
                      use_07_metric: bool = False) -> float:
  """Area under a precision/recall curve, VOC style.

  Args:
    recall: [D] cumulative recall after each detection (non-decreasing).
    precision: [D] cumulative precision after each detection.
    use_07_metric: if True, the VOC2007 11-point metric (mean of the maximum
      precision at recall >= 0, 0.1, ..., 1); otherwise the VOC2010+ all-point
      area under the monotone (non-increasing) precision envelope.

  Returns:
    The average precision in [0, 1].
  """
  recall = np.asarray(recall, np.float64)
  precision = np.asarray(precision, np.float64)
  if use_07_metric:
    points = []
    for threshold in np.linspace(0.0, 1.0, 11):
      above = precision[recall >= threshold]
      points.append(above.max() if above.size else 0.0)
    return float(np.mean(points))
  mrec = np.concatenate([[0.0], recall, [1.0]])
  mpre = np.concatenate([[0.0], precision, [0.0]])
  # Envelope: precision at recall r is the best precision at any recall >= r.
  mpre = np.maximum.accumulate(mpre[::-1])[::-1]
  steps = np.nonzero(mrec[1:] != mrec[:-1])[0]
  return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


class VOCMeanAPEvaluator:
  """Per-class AP and mAP at one IoU threshold, Pascal VOC style.

  For each class, detections of all evaluated images are sorted by
  descending score and matched greedily, as in the VOC devkit: a detection is
  compared with the ground-truth box of its class that it overlaps most; if
  that IoU is >= `iou_threshold` it is a true positive when the box is still
  unmatched, a false positive when already matched (duplicate), and ignored
  (neither TP nor FP) when the box is `difficult` or crowd. Anything else is
  a false positive. Ignored boxes do not count towards the number of
  positives.

  Only images passed to `update_state` are evaluated (all of their ground
  truth counts, also for images without detections). Classes without
  non-ignored ground truth there are left out of the mean and the per-class
  keys.

  Result keys (T is the threshold, e.g. 0.5): `mAP@T` and `AP@T/<name>` for
  each category name (category id when the JSON has no name).
  """

  def __init__(self,
               annotation_file: str,
               iou_threshold: float = 0.5,
               use_07_metric: bool = False,
               need_rescale_bboxes: bool = True,
               ignore_difficult: bool = True):
    """Constructs the evaluator.

    Args:
      annotation_file: COCO-format ground-truth JSON; annotations may carry
        `difficult` (0/1) and `iscrowd`.
      iou_threshold: IoU needed for a match.
      use_07_metric: use the VOC2007 11-point AP instead of the all-point AP.
      need_rescale_bboxes: True if `detection_boxes` are in pixels of the
        resized image (divided by `image_info[:, 2]`), False if they are in
        original-image pixels.
      ignore_difficult: if False, `difficult` boxes count as ordinary ground
        truth (crowd boxes are always ignored).
    """
    self._iou_threshold = float(iou_threshold)
    self._use_07_metric = use_07_metric
    self._need_rescale_bboxes = need_rescale_bboxes
    self._annotation_file = annotation_file
    with tf.io.gfile.GFile(annotation_file, 'r') as f:
      dataset = json.load(f)
    self._category_names = {
        c['id']: str(c.get('name', c['id'])) for c in dataset['categories']}
    self._image_ids_in_file = {img['id'] for img in dataset['images']}
    # (image_id, category_id) -> ([K, 4] xyxy boxes, [K] ignore flags).
    grouped = collections.defaultdict(list)
    for ann in dataset['annotations']:
      x, y, w, h = (float(v) for v in ann['bbox'])
      ignore = bool(ann.get('iscrowd', 0)) or (
          ignore_difficult and bool(ann.get('difficult', 0)))
      grouped[(ann['image_id'], ann['category_id'])].append(
          (x, y, x + w, y + h, ignore))
    self._groundtruth = {
        key: (np.array([v[:4] for v in values], np.float64).reshape([-1, 4]),
              np.array([v[4] for v in values], bool))
        for key, values in grouped.items()}
    self.reset_states()

  @property
  def name(self) -> str:
    return 'voc_map'

  def reset_states(self) -> None:
    """Clears the accumulated detections."""
    self._image_ids: set[Any] = set()
    # category_id -> list of (image_id, score, [4] xyxy box).
    self._detections: dict[int, list[tuple[Any, float, np.ndarray]]] = (
        collections.defaultdict(list))

  def update_state(self, groundtruths: Mapping[str, Any] | None,
                   predictions: Mapping[str, Any]) -> None:
    """Stores one batch of detections.

    Args:
      groundtruths: ignored; ground truth comes from `annotation_file`.
      predictions: dict of batched arrays or tensors: `source_id` [B],
        `image_info` [B, 4, 2] (when `need_rescale_bboxes`),
        `num_detections` [B], `detection_boxes` [B, N, 4] [ymin, xmin, ymax,
        xmax] pixels, `detection_scores` [B, N], `detection_classes` [B, N]
        category ids.

    Raises:
      ValueError: on missing fields or unknown image ids.
    """
    del groundtruths  # Ground truth comes from the annotation file.
    predictions = utils.dict_to_numpy(predictions)
    required = ['source_id', 'num_detections', 'detection_boxes',
                'detection_scores', 'detection_classes']
    if self._need_rescale_bboxes:
      required.append('image_info')
    ids = utils.checked_image_ids(predictions, required,
                                  self._image_ids_in_file,
                                  self._annotation_file)

    boxes = predictions['detection_boxes'].astype(np.float64)
    if self._need_rescale_bboxes:
      scale = predictions['image_info'][:, 2, :].astype(np.float64)
      boxes = boxes / np.tile(scale, [1, 2])[:, None, :]
    boxes = boxes[..., [1, 0, 3, 2]]  # yxyx -> xyxy, as the ground truth.
    counts = np.minimum(
        predictions['num_detections'].reshape([-1]).astype(np.int64),
        boxes.shape[1])
    classes = predictions['detection_classes']
    scores = predictions['detection_scores']
    for j, img_id in enumerate(ids):
      for k in range(int(counts[j])):
        self._detections[int(classes[j, k])].append(
            (img_id, float(scores[j, k]), boxes[j, k]))
    self._image_ids.update(ids)

  def _class_ap(self, category_id: int) -> float | None:
    """AP of one class over the evaluated images; None without positives."""
    num_positives = 0
    for img_id in self._image_ids:
      gt = self._groundtruth.get((img_id, category_id))
      if gt is not None:
        num_positives += int(np.sum(~gt[1]))
    if num_positives == 0:
      return None
    entries = self._detections.get(category_id, [])
    image_keys = [entry[0] for entry in entries]
    scores = [entry[1] for entry in entries]
    dets = [entry[2] for entry in entries]

    # Stable sort: equal scores keep their input order (deterministic).
    order = np.argsort(-np.asarray(scores, np.float64), kind='stable')
    matched = {}
    tp = np.zeros(len(order))
    fp = np.zeros(len(order))
    keep = np.ones(len(order), bool)
    for rank, d in enumerate(order):
      img_id = image_keys[d]
      gt = self._groundtruth.get((img_id, category_id))
      if gt is None or not len(gt[0]):
        fp[rank] = 1
        continue
      gt_boxes, gt_ignore = gt
      overlaps = _iou_one_to_many(dets[d], gt_boxes)
      best = int(np.argmax(overlaps))
      if overlaps[best] < self._iou_threshold:
        fp[rank] = 1
      elif gt_ignore[best]:
        keep[rank] = False  # On a difficult/crowd box: neither TP nor FP.
      else:
        used = matched.setdefault(img_id, np.zeros(len(gt_boxes), bool))
        if used[best]:
          fp[rank] = 1  # Duplicate detection of an already matched box.
        else:
          used[best] = True
          tp[rank] = 1
    tp = np.cumsum(tp[keep])
    fp = np.cumsum(fp[keep])
    recall = tp / num_positives
    precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    return average_precision(recall, precision, self._use_07_metric)

  def evaluate(self) -> dict[str, float]:
    """Computes per-class AP and their mean over classes with ground truth."""
    threshold = f'{self._iou_threshold:g}'
    metrics = {}
    per_class = []
    for category_id, name in sorted(self._category_names.items()):
      ap = self._class_ap(category_id)
      if ap is None:
        continue
      per_class.append(ap)
      metrics[f'AP@{threshold}/{name}'] = ap
    mean_ap = float(np.mean(per_class)) if per_class else -1.0
    return {f'mAP@{threshold}': mean_ap, **metrics}

  def result(self) -> dict[str, float]:
    """Evaluates and resets the state."""
    metrics = self.evaluate()
    self.reset_states()
    return metrics
