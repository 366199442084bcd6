"""Precision-recall curves per class (and over all classes) from COCOeval's
accumulated `precision` array, at IoU 0.5 and 0.75."""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np
from pycocotools import cocoeval

from tf_mtdet.evaluation import coco
from tf_mtdet.tools.analysis import outputs

_IOUS = ((0, 'IoU 0.50'), (5, 'IoU 0.75'))
ALL_CLASSES = 'all classes'


def curves(evaluated: cocoeval.COCOeval, category_names: Mapping[int, str]
           ) -> tuple[np.ndarray, dict[str, dict[str, np.ndarray]]]:
  """Precision at COCO's 101 recall points per class and IoU threshold.

  Returns:
    recall [R] and {class name or ALL_CLASSES: {IoU label: precision [R]}}
    (area 'all', the largest max detections). A class without ground truth
    is left out; 'all classes' averages the classes that have some, at each
    recall point.
  """
  precision = evaluated.eval['precision']
  recall = np.asarray(evaluated.params.recThrs, np.float64)
  result = {}
  for k, category_id in enumerate(evaluated.params.catIds):
    values = precision[:, :, k, 0, -1]
    if not (values > -1).any():
      continue
    result[category_names.get(category_id, str(category_id))] = {
        label: np.maximum(values[index], 0.0) for index, label in _IOUS}
  if result:
    result = {ALL_CLASSES: {label: np.mean([c[label] for c in result.values()],
                                           axis=0) for _, label in _IOUS},
              **result}
  return recall, result


def plot(path: str, evaluated: cocoeval.COCOeval,
         category_names: Mapping[int, str]) -> int:
  """Draws one panel per class plus 'all classes'; returns the panels.

  Raises:
    ValueError: no class has ground truth (nothing to draw).
  """
  recall, per_class = curves(evaluated, category_names)
  if not per_class:
    raise ValueError('no class has ground truth in the evaluated images: no '
                     'precision-recall curve to draw')
  ap = {}
  for k, category_id in enumerate(evaluated.params.catIds):
    name = category_names.get(category_id, str(category_id))
    ap[name] = {label: coco.category_ap(evaluated.eval['precision'], k, i)
                for i, label in _IOUS}
  n = len(per_class)
  cols = min(n, 4)
  rows = math.ceil(n / cols)
  figure = outputs.new_figure(3.2 * cols, 3.0 * rows)
  for panel, (name, by_iou) in enumerate(per_class.items()):
    axes = figure.add_subplot(rows, cols, panel + 1)
    for label, precision in by_iou.items():
      value = (float(np.mean(precision)) if name == ALL_CLASSES else
               ap[name][label])
      axes.plot(recall, precision, label=f'{label} (AP {value:.3f})')
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.02)
    axes.set_title(name, fontsize=10)
    axes.set_xlabel('recall', fontsize=8)
    axes.set_ylabel('precision', fontsize=8)
    axes.tick_params(labelsize=7)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, loc='lower left')
  figure.tight_layout()
  outputs.save_figure(figure, path)
  return n
