"""`tf-mtdet evaluate`'s analysis of a COCO results file: metrics, the
per-class table, the confusion matrix and precision-recall curves."""

from __future__ import annotations

import dataclasses
from typing import Mapping, Optional

from tf_mtdet.tools.analysis import confusion
from tf_mtdet.tools.analysis import outputs
from tf_mtdet.tools.analysis import per_class
from tf_mtdet.tools.analysis import pr_curves
from tf_mtdet.tools.analysis import results_file


@dataclasses.dataclass
class Request:
  """What to produce besides the metrics.

  Attributes:
    per_class: Print the per-class table and write it as CSV and JSON beside
      the results file.
    confusion_png: Confusion matrix picture (its CSV beside it).
    pr_curves_png: Precision-recall curves picture.
    score_threshold: Detections below it stay out of the confusion matrix.
    iou_threshold: IoU of a match in the confusion matrix.
  """
  per_class: bool = False
  confusion_png: Optional[str] = None
  pr_curves_png: Optional[str] = None
  score_threshold: float = 0.3
  iou_threshold: float = 0.5

  @property
  def any(self) -> bool:
    return bool(self.per_class or self.confusion_png or self.pr_curves_png)

  def check(self) -> None:
    """Refuses bad options before any work is done."""
    if self.confusion_png:
      outputs.check_png_path(self.confusion_png, '--confusion-matrix')
    if self.pr_curves_png:
      outputs.check_png_path(self.pr_curves_png, '--pr-curves')
    if not 0.0 <= self.score_threshold <= 1.0:
      raise ValueError(f'--score-threshold {self.score_threshold}: must be in '
                       '[0, 1]')
    if not 0.0 < self.iou_threshold <= 1.0:
      raise ValueError(f'--iou-threshold {self.iou_threshold}: must be in '
                       '(0, 1]')


@dataclasses.dataclass
class Report:
  """The headline metrics (`AP`..., `mask_AP`..., `voc_mAP@0.5`,
  `voc07_mAP@0.5`) and the lines naming what was written."""
  metrics: dict[str, float]
  lines: list[str]


def analyze(results_path: str, annotation_file: str, request: Request,
            extra_columns: Optional[Mapping[str, Mapping[str, float]]] = None
            ) -> Report:
  """Scores a results file and writes what `request` asks for.

  Args:
    results_path: COCO results JSON.
    annotation_file: COCO annotation JSON.
    request: The outputs to produce.
    extra_columns: {column: {class name: value}} for the per-class table
      (e.g. IoU per class from a checkpoint's semantic output).

  Returns:
    The metrics and the lines to print.
  """
  request.check()
  scored = results_file.load(results_path, annotation_file)
  scores = per_class.score(scored)
  lines = []
  if request.per_class:
    if extra_columns:
      per_class.merge_extra(scores.table, extra_columns,
                            scored.category_names)
    csv_path, json_path = per_class.side_paths(results_path)
    scores.table.write(csv_path, json_path)
    lines += [scores.table.format(),
              f'per-class table: {csv_path}, {json_path}']
  if request.confusion_png:
    matrix, labels = confusion.confusion_matrix(
        scored, request.score_threshold, request.iou_threshold)
    csv_path = confusion.write(
        request.confusion_png, matrix, labels,
        title=f'score >= {request.score_threshold:g}, IoU >= '
        f'{request.iou_threshold:g}')
    lines.append(f'confusion matrix: {request.confusion_png}, {csv_path}')
  if request.pr_curves_png:
    panels = pr_curves.plot(request.pr_curves_png, scores.box_eval,
                            scored.category_names)
    lines.append(f'precision-recall curves ({panels} panels): '
                 f'{request.pr_curves_png}')
  return Report(scores.metrics, lines)
