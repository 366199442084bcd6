"""A COCO results file read against an annotation file.

The results file is a list of COCO results entries (`image_id`,
`category_id`, `bbox` [x, y, w, h] in original pixels, `score`, optionally
`segmentation` as RLE), as `tf-mtdet evaluate` and `tf-mtdet predict --json`
write them. An entry with a `file_name` is matched to the annotation file's
image of that base name (`predict` on a folder numbers images by file);
without one its `image_id` must be an image id of the annotation file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
from typing import Any

import tensorflow as tf

from tf_mtdet.evaluation import utils as eval_utils

_REQUIRED = ('category_id', 'bbox', 'score')


@dataclasses.dataclass
class ScoredResults:
  """Ground truth and detections ready for pycocotools.

  Attributes:
    groundtruth: The annotation file as a `COCO` object.
    detections: Results entries, `image_id` resolved to the annotation file's
      ids, each with a unique positive `id` (pycocotools needs one).
    has_masks: Every entry has a `segmentation` (mask AP can be scored).
    annotation_file: Path of the annotation file (for messages).
  """
  groundtruth: Any
  detections: list[dict[str, Any]]
  has_masks: bool
  annotation_file: str

  @property
  def image_ids(self) -> list[Any]:
    """Every image of the annotation file (images without detections count:
    their objects are missed)."""
    return sorted(self.groundtruth.getImgIds())

  @property
  def category_names(self) -> dict[int, str]:
    return {c['id']: str(c.get('name', c['id']))
            for c in self.groundtruth.dataset['categories']}

  def load_results(self):
    """The detections as a pycocotools results object (`COCO.loadRes`);
    with masks the areas are the masks' (COCO's area ranges for segm)."""
    with contextlib.redirect_stdout(io.StringIO()):
      return self.groundtruth.loadRes(
          [dict(entry) for entry in self.detections])


def _read_json(path: str, what: str) -> Any:
  if not tf.io.gfile.exists(path):
    raise ValueError(f'{path}: {what} not found')
  try:
    with tf.io.gfile.GFile(path, 'r') as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise ValueError(f'{path}: {what} is not JSON: {e}') from None


def _entry_error(path: str, index: int, problem: str) -> ValueError:
  return ValueError(f'{path}: entry {index}: {problem}')


def load(results_path: str, annotation_file: str) -> ScoredResults:
  """Reads a results file and resolves its entries to the annotation file.

  Args:
    results_path: COCO results JSON (a list of entries).
    annotation_file: COCO annotation JSON with `images` and `categories`.

  Returns:
    The ground truth and the checked detections.

  Raises:
    ValueError: a missing or malformed file, or an entry naming an image or
      category the annotation file lacks (the message names the entry).
  """
  dataset = _read_json(annotation_file, 'annotation file')
  if not isinstance(dataset, dict) or not {'images', 'categories'} <= set(
      dataset):
    raise ValueError(f'{annotation_file}: not a COCO annotation file (needs '
                     '"images" and "categories")')
  dataset.setdefault('annotations', [])
  by_name, ambiguous = {}, set()
  for image in dataset['images']:
    name = os.path.basename(str(image.get('file_name', '')))
    if name in by_name:
      ambiguous.add(name)
    elif name:
      by_name[name] = image['id']
  image_ids = {image['id'] for image in dataset['images']}
  category_ids = {c['id'] for c in dataset['categories']}

  entries = _read_json(results_path, 'results file')
  if not isinstance(entries, list):
    raise ValueError(f'{results_path}: a COCO results file is a JSON list of '
                     f'entries, got {type(entries).__name__}')
  detections = []
  for index, entry in enumerate(entries):
    if not isinstance(entry, dict):
      raise _entry_error(results_path, index, 'not a JSON object')
    missing = [k for k in _REQUIRED if k not in entry]
    if 'file_name' not in entry and 'image_id' not in entry:
      missing.insert(0, 'image_id (or file_name)')
    if missing:
      raise _entry_error(results_path, index,
                         f'missing {", ".join(missing)}')
    if 'file_name' in entry:
      name = os.path.basename(str(entry['file_name']))
      if name not in by_name:
        raise _entry_error(results_path, index,
                           f'file_name {entry["file_name"]!r} is not an image '
                           f'of {annotation_file}')
      if name in ambiguous:
        raise _entry_error(results_path, index,
                           f'file_name {entry["file_name"]!r}: several images '
                           f'of {annotation_file} have that base name, so '
                           'it names none of them')
      image_id = by_name[name]
    else:
      image_id = eval_utils.image_id(entry['image_id'])
      if image_id not in image_ids:
        raise _entry_error(results_path, index,
                           f'image_id {entry["image_id"]!r} is not an image '
                           f'of {annotation_file}')
    if entry['category_id'] not in category_ids:
      raise _entry_error(results_path, index,
                         f'category_id {entry["category_id"]!r} is not a '
                         f'category of {annotation_file}')
    bbox = entry['bbox']
    if (not isinstance(bbox, list) or len(bbox) != 4 or
        not all(isinstance(v, (int, float)) for v in bbox)):
      raise _entry_error(results_path, index,
                         f'bbox {bbox!r} is not [x, y, width, height]')
    if not isinstance(entry['score'], (int, float)):
      raise _entry_error(results_path, index,
                         f'score {entry["score"]!r} is not a number')
    detection = {'image_id': image_id, 'category_id': entry['category_id'],
                 'bbox': [float(v) for v in bbox],
                 'score': float(entry['score']), 'id': len(detections) + 1}
    if 'segmentation' in entry:
      detection['segmentation'] = entry['segmentation']
    detections.append(detection)
  has_masks = bool(detections) and all('segmentation' in d
                                       for d in detections)
  groundtruth = eval_utils.load_coco_groundtruth(
      annotation_file, eval_type='mask' if has_masks else 'box')
  return ScoredResults(groundtruth, detections, has_masks, annotation_file)
