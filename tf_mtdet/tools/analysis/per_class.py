"""Per-class results: COCO AP/AP50/AP75 (box and mask), VOC AP and IoU.

COCO values are read from pycocotools' accumulated `precision` array
[iou thresholds, recall points, categories, area ranges, max detections]
(area 'all', the largest max detections), averaged over recall points as
COCOeval's own summary does; VOC values are the `VOCMeanAPEvaluator`'s.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Mapping, Sequence

import numpy as np
from pycocotools import cocoeval

from tf_mtdet.evaluation import coco
from tf_mtdet.evaluation import utils as eval_utils
from tf_mtdet.evaluation import voc
from tf_mtdet.tools.analysis import outputs
from tf_mtdet.tools.analysis import results_file

# COCOeval's default IoU thresholds are 0.50:0.05:0.95.
_IOU_INDEX = {'AP50': 0, 'AP75': 5}


def coco_per_class(evaluated: cocoeval.COCOeval,
                   prefix: str = '') -> dict[int, dict[str, float]]:
  """{category id: {prefix + 'AP' | 'AP50' | 'AP75': value}}."""
  precision = evaluated.eval['precision']
  table = {}
  for k, category_id in enumerate(evaluated.params.catIds):
    row = {prefix + 'AP': coco.category_ap(precision, k)}
    for name, index in _IOU_INDEX.items():
      row[prefix + name] = coco.category_ap(precision, k, index)
    table[category_id] = row
  return table


def voc_per_class(scored: results_file.ScoredResults,
                  use_07_metric: bool = False) -> dict[int, float]:
  """{category id: VOC AP@0.5} of the classes with ground truth."""
  evaluator = voc.VOCMeanAPEvaluator(scored.annotation_file,
                                     use_07_metric=use_07_metric,
                                     need_rescale_bboxes=False)
  by_image = {image_id: [] for image_id in scored.image_ids}
  for entry in scored.detections:
    by_image[entry['image_id']].append(entry)
  for image_id, entries in by_image.items():
    # One image per batch: [1, N, 4] yxyx boxes in original pixels.
    boxes = np.array([[y, x, y + h, x + w] for x, y, w, h in
                      (e['bbox'] for e in entries)], np.float64).reshape(
                          [1, -1, 4])
    evaluator.update_state(None, {
        'source_id': np.array([image_id], object),
        'num_detections': np.array([len(entries)]),
        'detection_boxes': boxes,
        'detection_scores': np.array([[e['score'] for e in entries]],
                                     np.float64).reshape([1, -1]),
        'detection_classes': np.array([[e['category_id'] for e in entries]],
                                      np.int64).reshape([1, -1])})
  metrics = evaluator.result()
  ids = {name: cid for cid, name in scored.category_names.items()}
  return {ids[key.split('/', 1)[1]]: value for key, value in metrics.items()
          if '/' in key}


@dataclasses.dataclass
class PerClassTable:
  """Classes by metric; a missing value (no ground truth) is NaN.

  Attributes:
    columns: Metric names in display order.
    rows: Class name -> {column: value}.
  """
  columns: list[str]
  rows: dict[str, dict[str, float]]

  def value(self, name: str, column: str) -> float:
    return self.rows[name].get(column, math.nan)

  def format(self) -> str:
    """A plain-text table, one class a line."""
    width = max([len('class')] + [len(n) for n in self.rows])
    widths = [max(len(c), 6) for c in self.columns]
    lines = ['  '.join(['class'.ljust(width)] +
                       [c.rjust(w) for c, w in zip(self.columns, widths)])]
    for name in self.rows:
      cells = []
      for column, w in zip(self.columns, widths):
        v = self.value(name, column)
        cells.append(('n/a' if math.isnan(v) or v < 0 else f'{v:.4f}').rjust(w))
      lines.append('  '.join([name.ljust(width)] + cells))
    return '\n'.join(lines)

  def write(self, csv_path: str, json_path: str) -> None:
    """Writes the table as CSV (empty cell: no ground truth) and JSON."""
    rows = []
    for name in self.rows:
      values = [self.value(name, c) for c in self.columns]
      rows.append([name] + ['' if math.isnan(v) or v < 0 else f'{v:.6f}'
                            for v in values])
    outputs.write_csv(csv_path, ['class'] + self.columns, rows)
    data = {name: {c: (None if math.isnan(v) or v < 0 else v)
                   for c in self.columns
                   for v in [self.value(name, c)]} for name in self.rows}
    outputs.write_bytes(json_path, json.dumps(
        {'columns': self.columns, 'classes': data}, indent=1).encode())


def build_table(category_names: Mapping[int, str],
                columns: Sequence[Mapping[int, Mapping[str, float]]]
                ) -> PerClassTable:
  """Joins per-category results into one table.

  Args:
    category_names: Category id -> name (row order: by id).
    columns: Each {category id: {column: value}}.

  Returns:
    The table.
  """
  rows = {name: {} for _, name in sorted(category_names.items())}
  order = []
  for group in columns:
    for category_id, values in group.items():
      name = category_names.get(category_id)
      if name is None:
        continue
      for column, value in values.items():
        if column not in order:
          order.append(column)
        rows[name][column] = value
  return PerClassTable(order, rows)


def from_metrics(metrics: Mapping[str, float], prefix: str) -> dict[str, float]:
  """{class name: value} of an evaluator's `<prefix><name>` keys (e.g.
  `IoU/` of the semantic evaluator)."""
  return {key[len(prefix):]: value for key, value in metrics.items()
          if key.startswith(prefix)}


@dataclasses.dataclass
class Scores:
  """What `score` computes from a results file.

  Attributes:
    metrics: Headline metrics: COCO `AP`... (`mask_AP`... with masks),
      `voc_mAP@0.5`, `voc07_mAP@0.5`.
    table: Per-class table.
    box_eval: The box `COCOeval` (its precision array draws the curves).
  """
  metrics: dict[str, float]
  table: PerClassTable
  box_eval: cocoeval.COCOeval


def score(scored: results_file.ScoredResults) -> Scores:
  """COCO box (and mask) AP and VOC AP of a results file, overall and per
  class, over every image of the annotation file."""
  results = scored.load_results()
  evals = {'': eval_utils.run_cocoeval(scored.groundtruth, results, 'bbox',
                                       scored.image_ids)}
  if scored.has_masks:
    evals['mask_'] = eval_utils.run_cocoeval(scored.groundtruth, results,
                                             'segm', scored.image_ids)
  metrics = {}
  names = ('AP', 'AP50', 'AP75', 'APs', 'APm', 'APl')
  for prefix, evaluated in evals.items():
    metrics.update({prefix + n: float(v)
                    for n, v in zip(names, evaluated.stats)})
  columns = [coco_per_class(e, prefix) for prefix, e in evals.items()]
  for key, use_07 in (('voc_AP@0.5', False), ('voc07_AP@0.5', True)):
    per_class = voc_per_class(scored, use_07)
    metrics['voc07_mAP@0.5' if use_07 else 'voc_mAP@0.5'] = (
        float(np.mean(list(per_class.values()))) if per_class else -1.0)
    columns.append({cid: {key: v} for cid, v in per_class.items()})
  return Scores(metrics, build_table(scored.category_names, columns),
                evals[''])


def side_paths(results_path: str) -> tuple[str, str]:
  """The per-class CSV and JSON paths beside a results file."""
  stem = results_path[:-5] if results_path.endswith('.json') else results_path
  return stem + '_per_class.csv', stem + '_per_class.json'


def merge_extra(table: PerClassTable,
                extra: Mapping[str, Mapping[str, float]],
                category_names: Mapping[int, str]) -> None:
  """Adds {column: {class: value}} columns to `table` in place, joined by
  name; a class given as a label index (the semantic evaluator's `IoU/<k>`
  without class names) is the category of that id, 0 background."""
  for column, values in extra.items():
    table.columns.append(column)
    for name, value in values.items():
      if name.isdigit():
        name = category_names.get(int(name),
                                  'background' if name == '0' else name)
      table.rows.setdefault(name, {})[column] = value
