"""Host-side helpers shared by the evaluators: tensors to numpy, image ids,
atomic JSON writes and quiet pycocotools runs."""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from typing import Any, Mapping

from absl import logging
import numpy as np
from pycocotools import cocoeval
import tensorflow as tf

from official.vision.evaluation import coco_utils




def to_numpy(value: Any) -> np.ndarray:
  """Converts a tensor, array, or tuple of per-replica batches to numpy.

  Args:
    value: a `tf.Tensor`, `np.ndarray`, python scalar/list, or a tuple/list of
      tensors/arrays that are concatenated along axis 0 (what distributed
      evaluation returns per replica).

  Returns:
    A numpy array.
  """
  if isinstance(value, (tuple, list)) and value and (
      hasattr(value[0], 'numpy') or isinstance(value[0], np.ndarray)):
    return np.concatenate([to_numpy(v) for v in value], axis=0)
  if hasattr(value, 'numpy'):
    return value.numpy()
  return np.asarray(value)


def dict_to_numpy(values: Mapping[str, Any] | None) -> dict[str, np.ndarray]:
  """Applies `to_numpy` to every entry of a flat dict (None -> {})."""
  if not values:
    return {}
  return {key: to_numpy(value) for key, value in values.items()}


def image_id(value: Any) -> int | str:
  """Normalizes one `source_id` entry to the id type of COCO JSON files.

  Model Garden decoders keep `source_id` as a string tensor while COCO JSON
  ids are ints, so numeric strings become ints.

  Args:
    value: a numpy/python integer, bytes or str.

  Returns:
    An `int` for numeric ids, otherwise the decoded `str`.
  """
  if isinstance(value, (bytes, np.bytes_)):
    value = value.decode('utf-8')
  if isinstance(value, str):
    stripped = value.strip()
    return int(stripped) if stripped.lstrip('-').isdigit() else stripped
  return int(value)


def atomic_write_json(obj: Any, path: str) -> None:
  """Writes `obj` as JSON to `path` through a temporary file and a rename.

  Readers never observe a partial file: data goes to a hidden temporary file
  in the destination directory, which is renamed over `path` only once it is
  complete (and removed if writing fails).

  Args:
    obj: a JSON-serializable object.
    path: destination path (local or any `tf.io.gfile` filesystem).
  """
  directory = os.path.dirname(path) or '.'
  tf.io.gfile.makedirs(directory)
  if '://' in path:
    tmp_path = f'{path}.tmp-{os.getpid()}'
  else:
    fd, tmp_path = tempfile.mkstemp(
        dir=directory, prefix='.' + os.path.basename(path) + '.',
        suffix='.tmp')
    os.close(fd)
  try:
    with tf.io.gfile.GFile(tmp_path, 'w') as f:
      f.write(json.dumps(obj))  # dumps uses the C encoder, dump does not
    tf.io.gfile.rename(tmp_path, path, overwrite=True)
  except BaseException:
    if tf.io.gfile.exists(tmp_path):
      tf.io.gfile.remove(tmp_path)
    raise


def load_coco_groundtruth(annotation_file: str,
                          eval_type: str = 'box') -> coco_utils.COCOWrapper:
  """Loads a COCO-format annotation file (local or `tf.io.gfile` path).

  Args:
    annotation_file: path of the COCO JSON file.
    eval_type: 'box' or 'mask'; decides how `loadRes` fills in result areas.

  Returns:
    A Model Garden `COCOWrapper` (a `pycocotools.coco.COCO`).
  """
  with tf.io.gfile.GFile(annotation_file, 'r') as f:
    dataset = json.load(f)
  with contextlib.redirect_stdout(io.StringIO()):
    # `gt_dataset` skips pycocotools' own (local-only, chatty) file loading.
    return coco_utils.COCOWrapper(eval_type=eval_type, gt_dataset=dataset)


def run_cocoeval(coco_gt, coco_dt, iou_type: str, image_ids: list[Any],
                 summarize: bool = True, **params) -> cocoeval.COCOeval:
  """Runs pycocotools evaluate/accumulate/summarize with stdout captured.

  pycocotools prints progress and the summary table; the table goes to the
  absl log instead so training logs stay one line per evaluation.

  Args:
    coco_gt: ground-truth `COCO` object.
    coco_dt: results `COCO` object (from `loadRes`).
    iou_type: 'bbox' or 'segm'.
    image_ids: image ids to evaluate.
    summarize: whether to fill `stats` (needs the default 3 `maxDets` and
      the default area ranges).
    **params: attributes set on `COCOeval.params` (e.g. `maxDets`, `useCats`).

  Returns:
    The evaluated `COCOeval` (with `eval` and `stats` filled in).
  """
  evaluator = cocoeval.COCOeval(coco_gt, coco_dt, iouType=iou_type)
  evaluator.params.imgIds = list(image_ids)
  for name, value in params.items():
    setattr(evaluator.params, name, value)
  buffer = io.StringIO()
  with contextlib.redirect_stdout(buffer):
    evaluator.evaluate()
    evaluator.accumulate()
    if summarize:
      evaluator.summarize()
  logging.info('COCOeval (%s):\n%s', iou_type, buffer.getvalue())
  return evaluator


def checked_image_ids(predictions: Mapping[str, np.ndarray],
                      required: list[str], known_ids: Any,
                      annotation_file: str) -> list[Any]:
  """Checks a prediction batch and returns its image ids.

  Args:
    predictions: numpy batch; must hold `source_id` and every `required` key.
    required: keys the evaluator needs.
    known_ids: container of the image ids in the ground truth.
    annotation_file: named in the error message.

  Returns:
    The batch's image ids, normalised by `image_id`.

  Raises:
    ValueError: a key is missing or an id is not in the ground truth.
  """
  for key in ['source_id', *required]:
    if key not in predictions:
      raise ValueError(f'Missing the required key `{key}` in predictions!')
  ids = [image_id(s) for s in predictions['source_id'].reshape([-1])]
  unknown = [i for i in ids if i not in known_ids]
  if unknown:
    raise ValueError(f'Image ids {unknown[:5]} are not in the annotation '
                     f'file {annotation_file}.')
  return ids
