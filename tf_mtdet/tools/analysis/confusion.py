"""Detection confusion matrix, as mmdetection's `confusion_matrix.py` defines
it.

Rows are ground-truth classes, columns predicted classes, each plus a last
"background" entry. Per image, every detection scoring at least the score
threshold is compared with every ground-truth box: each box it overlaps at
IoU >= the IoU threshold adds one to [box class, detection class] (a
detection can count for several boxes), and a detection overlapping none
adds one to [background, detection class]. A box that no detection of its
own class overlaps adds one to [box class, background]. Crowd boxes are left
out (mmdetection's COCO loader keeps them apart as ignored boxes).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from pycocotools import mask as mask_api

from tf_mtdet.tools.analysis import outputs
from tf_mtdet.tools.analysis import results_file

BACKGROUND = 'background'


def box_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
  """[N, M] IoU of [N, 4] and [M, 4] COCO [x, y, w, h] boxes (pycocotools)."""
  a = np.asarray(boxes_a, np.float64).reshape([-1, 4])
  b = np.asarray(boxes_b, np.float64).reshape([-1, 4])
  if not len(a) or not len(b):
    return np.zeros([len(a), len(b)])
  return np.asarray(mask_api.iou(a, b, [0] * len(b)), np.float64).reshape(
      [len(a), len(b)])


def image_confusion(gt_boxes: np.ndarray, gt_classes: Sequence[int],
                    det_boxes: np.ndarray, det_classes: Sequence[int],
                    det_scores: Sequence[float], num_classes: int,
                    score_threshold: float = 0.3,
                    iou_threshold: float = 0.5) -> np.ndarray:
  """The confusion counts of one image.

  Args:
    gt_boxes: [G, 4] ground-truth [x, y, w, h].
    gt_classes: [G] class indices in [0, num_classes).
    det_boxes: [D, 4] detections [x, y, w, h].
    det_classes: [D] class indices in [0, num_classes).
    det_scores: [D] scores.
    num_classes: C.
    score_threshold: Detections below it are dropped.
    iou_threshold: IoU for a detection to match a box.

  Returns:
    [C + 1, C + 1] int64 counts (rows ground truth, columns prediction, the
    last of each is background).
  """
  matrix = np.zeros([num_classes + 1, num_classes + 1], np.int64)
  gt_classes = np.asarray(gt_classes, np.int64).reshape([-1])
  det_classes = np.asarray(det_classes, np.int64).reshape([-1])
  keep = np.asarray(det_scores, np.float64).reshape([-1]) >= score_threshold
  det_boxes = np.asarray(det_boxes, np.float64).reshape([-1, 4])[keep]
  det_classes = det_classes[keep]
  ious = box_iou(det_boxes, gt_boxes)
  found = np.zeros(len(gt_classes), bool)
  for d, det_class in enumerate(det_classes):
    matches = np.nonzero(ious[d] >= iou_threshold)[0]
    if not matches.size:
      matrix[num_classes, det_class] += 1
    for g in matches:
      matrix[gt_classes[g], det_class] += 1
      found[g] |= gt_classes[g] == det_class
  for g in np.nonzero(~found)[0]:
    matrix[gt_classes[g], num_classes] += 1
  return matrix


def confusion_matrix(scored: results_file.ScoredResults,
                     score_threshold: float = 0.3,
                     iou_threshold: float = 0.5
                     ) -> tuple[np.ndarray, list[str]]:
  """The confusion matrix of a results file over its annotation file's
  images.

  Returns:
    [C + 1, C + 1] int64 counts and the C + 1 labels (class names by
    category id, then background).
  """
  categories = sorted(scored.category_names.items())
  index = {cid: k for k, (cid, _) in enumerate(categories)}
  num_classes = len(categories)
  detections = {}
  for entry in scored.detections:
    detections.setdefault(entry['image_id'], []).append(entry)
  matrix = np.zeros([num_classes + 1, num_classes + 1], np.int64)
  groundtruth = scored.groundtruth
  for image_id in scored.image_ids:
    anns = [a for a in groundtruth.imgToAnns.get(image_id, [])
            if not a.get('iscrowd', 0)]
    dets = detections.get(image_id, [])
    matrix += image_confusion(
        np.array([a['bbox'] for a in anns], np.float64).reshape([-1, 4]),
        [index[a['category_id']] for a in anns],
        np.array([d['bbox'] for d in dets], np.float64).reshape([-1, 4]),
        [index[d['category_id']] for d in dets],
        [d['score'] for d in dets], num_classes, score_threshold,
        iou_threshold)
  return matrix, [name for _, name in categories] + [BACKGROUND]


def write_csv(path: str, matrix: np.ndarray, labels: Sequence[str]) -> None:
  """Counts as CSV: a header of predicted labels, one row per true label."""
  outputs.write_csv(path, ['ground truth \\ predicted'] + list(labels),
                    [[label] + [int(v) for v in row]
                     for label, row in zip(labels, matrix)])


def plot(path: str, matrix: np.ndarray, labels: Sequence[str],
         title: str = 'Confusion matrix') -> None:
  """Draws the matrix as mmdetection does: each row as percentages of its
  total (the last row, background, of the false positives), counts in the
  CSV."""
  totals = matrix.sum(axis=1, keepdims=True)
  percent = np.where(totals > 0, 100.0 * matrix / np.maximum(totals, 1), 0.0)
  n = len(labels)
  size = max(4.0, 0.55 * n + 2.0)
  figure = outputs.new_figure(size, size * 0.9)
  axes = figure.add_subplot(1, 1, 1)
  image = axes.imshow(percent, cmap='Blues', vmin=0, vmax=100)
  figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label='% of row')
  axes.set_xticks(range(n), labels, rotation=45, ha='right')
  axes.set_yticks(range(n), labels)
  axes.set_xlabel('predicted')
  axes.set_ylabel('ground truth')
  axes.set_title(title)
  if n <= 30:
    for i in range(n):
      for j in range(n):
        if matrix[i, j]:
          axes.text(j, i, f'{percent[i, j]:.0f}\n({matrix[i, j]})',
                    ha='center', va='center', fontsize=7,
                    color='white' if percent[i, j] > 50 else 'black')
  outputs.save_figure(figure, path)


def csv_path_for(png_path: str) -> str:
  return png_path[:-4] + '.csv'


def write(png_path: str, matrix: np.ndarray, labels: Sequence[str],
          title: str = 'Confusion matrix') -> str:
  """Writes OUT.png and OUT.csv; returns the CSV path."""
  csv_path = csv_path_for(png_path)
  write_csv(csv_path, matrix, labels)
  plot(png_path, matrix, labels, title)
  return csv_path

