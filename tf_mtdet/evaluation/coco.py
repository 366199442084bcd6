"""COCO box and mask AP on top of Model Garden's `COCOEvaluator`.

Ground truth is a COCO-format JSON file (the dataset builder writes one per
dataset). Predictions follow the Model Garden convention (batched arrays of
`source_id`, `image_info`, `num_detections`, `detection_boxes` [ymin, xmin,
ymax, xmax], `detection_scores`, `detection_classes` and optionally
`detection_masks`).

"""

from __future__ import annotations

import contextlib
import io
from typing import Any, Mapping

from absl import logging
import numpy as np
from pycocotools import cocoeval
from pycocotools import mask as mask_api

from official.vision.evaluation import coco_evaluator
from official.vision.evaluation import coco_utils

from tf_mtdet.evaluation import utils

_MASK_FORMATS = ('auto', 'box', 'image')


def category_ap(precision: np.ndarray, category_index: int,
                iou_index: int | None = None) -> float:
  """AP of one category from COCOeval's accumulated `precision` array.

  Args:
    precision: [T, R, K, A, M] `COCOeval.eval['precision']` (IoU thresholds,
      recall points, categories, area ranges, max detections).
    category_index: k, the category's position in `params.catIds`.
    iou_index: one IoU threshold's index (0: 0.5, 5: 0.75 with COCO's
      thresholds), or None for the mean over all thresholds.

  Returns:
    The mean precision over recall points (and thresholds) at area 'all' and
    the largest max detections, as COCOeval's summary averages; -1 when the
    category has no ground truth.
  """
  values = precision[:, :, category_index, 0, -1]
  if iou_index is not None:
    values = values[iou_index]
  values = values[values > -1]
  return float(values.mean()) if values.size else -1.0


class COCOEvaluator(coco_evaluator.COCOEvaluator):
  """COCO box (and mask) AP from a COCO JSON ground-truth file.

  Differences from Model Garden's `COCOEvaluator` (which this reuses for
  ground-truth loading, metric naming, box rescaling and per-box mask
  pasting):
    * predictions may be numpy arrays or tensors;
    * `num_detections` is honoured (padding detections are dropped);
    * every image passed to `update_state` is evaluated, including images
      with zero detections (Model Garden only evaluates images that appear in
      the converted detections);
    * full-image masks [B, N, H, W] (padded, cropped by the original size) are
      supported besides per-box masks;
    * detections are converted to COCO results per batch, so memory does not
      grow with the dataset when masks are large;
    * COCO results can be written to a JSON file atomically.

  Result keys: `AP`, `AP50`, `AP75`, `APs`, `APm`, `APl`, `ARmax1`,
  `ARmax10`, `ARmax{max_num_eval_detections}`, `ARs`, `ARm`, `ARl`; with masks
  the same names prefixed by `mask_`; with `per_category_metrics` also
  `AP/<category name>` (and `mask_AP/<category name>`). pycocotools reports
  -1 for metrics that have no ground truth (e.g. `APs` without small objects).
  """

  def __init__(self,
               annotation_file: str,
               include_mask: bool = False,
               need_rescale_bboxes: bool = True,
               per_category_metrics: bool = False,
               max_num_eval_detections: int = 100,
               mask_format: str = 'auto',
               mask_threshold: float = 0.5,
               results_path: str | None = None):
    """Constructs the evaluator.

    Args:
      annotation_file: COCO-format ground-truth JSON (local or gfile path).
      include_mask: whether to also compute mask AP from `detection_masks`.
      need_rescale_bboxes: True if `detection_boxes` are in pixels of the
        resized image (divided by `image_info[:, 2]`); False if they are
        already in original-image pixels.
      per_category_metrics: whether to add `AP/<name>` per category.
      max_num_eval_detections: maximum detections per image used by COCOeval.
      mask_format: 'box' for per-box masks [B, N, mh, mw] pasted inside each
        box, 'image' for full-image masks [B, N, H, W] in original-image
        pixels (padded at the bottom/right, cropped to the original size), or
        'auto' to pick 'image' when the mask is at least as large as every
        original image in the batch.
      mask_threshold: probability above which a full-image mask pixel is on.
      results_path: if set, `evaluate()` also writes the COCO results JSON
        there.

    Raises:
      ValueError: on a missing annotation file or an unknown `mask_format`.
    """
    if not annotation_file:
      raise ValueError('`annotation_file` is required: ground truth comes '
                       'from the COCO JSON file written by the data builder.')
    if mask_format not in _MASK_FORMATS:
      raise ValueError(f'mask_format must be one of {_MASK_FORMATS}, got '
                       f'{mask_format!r}.')
    self._mask_format = mask_format
    self._mask_threshold = float(mask_threshold)
    self._results_path = results_path
    self._per_category = per_category_metrics
    # Model Garden's per-category path needs a patched pycocotools
    # (`COCOeval.category_stats`); per-category AP is computed here instead.
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools chatter.
      super().__init__(
          annotation_file=annotation_file,
          include_mask=include_mask,
          need_rescale_bboxes=need_rescale_bboxes,
          per_category_metrics=False,
          max_num_eval_detections=max_num_eval_detections)

  def reset_states(self) -> None:
    """Clears the accumulated detections and the set of evaluated images."""
    super().reset_states()
    self._coco_predictions: list[dict[str, Any]] = []
    self._image_ids: set[Any] = set()

  @property
  def num_groundtruth_images(self) -> int:
    """Images in the ground-truth file (what a full evaluation covers)."""
    return len(self._coco_gt.getImgIds())

  @property
  def image_ids(self) -> list[Any]:
    """Sorted ids of the images seen since the last reset."""
    return sorted(self._image_ids)

  @property
  def coco_predictions(self) -> list[dict[str, Any]]:
    """Detections so far as COCO results entries (JSON-serializable)."""
    return list(self._coco_predictions)

  def update_state(self, groundtruths: Mapping[str, Any] | None,
                   predictions: Mapping[str, Any]) -> None:
    """Converts one batch of detections to COCO results and stores them.

    Args:
      groundtruths: ignored; ground truth comes from `annotation_file`.
      predictions: dict of batched arrays or tensors:
        - source_id: [B] image ids as in the annotation file.
        - image_info: [B, 4, 2] (needed to rescale boxes, and for masks the
          original size; if absent the size comes from the annotation file).
        - num_detections: [B] number of valid detections per image.
        - detection_boxes: [B, N, 4] [ymin, xmin, ymax, xmax] pixels.
        - detection_scores: [B, N].
        - detection_classes: [B, N] category ids.
        - detection_masks (with `include_mask`): [B, N, mh, mw] per-box or
          [B, N, H, W] full-image masks (probabilities or binary).

    Raises:
      ValueError: on missing fields or image ids that are not in the
        annotation file.
    """
    del groundtruths  # Ground truth comes from the annotation file.
    predictions = utils.dict_to_numpy(predictions)
    ids = utils.checked_image_ids(predictions,
                                  self._required_prediction_fields,
                                  self._coco_gt.imgs, self._annotation_file)
    if self._need_rescale_bboxes:
      self._process_bbox_predictions(predictions)  # Model Garden: boxes /= scale.
    self._coco_predictions.extend(self._to_coco_results(ids, predictions))
    self._image_ids.update(ids)

  def _original_sizes(self, ids: list[Any],
                      predictions: Mapping[str, np.ndarray]) -> np.ndarray:
    """Returns [B, 2] int original (height, width) per image."""
    if 'image_info' in predictions:
      return np.round(predictions['image_info'][:, 0, :]).astype(np.int64)
    return np.array([[self._coco_gt.imgs[i]['height'],
                      self._coco_gt.imgs[i]['width']] for i in ids], np.int64)

  def _resolve_mask_format(self, masks: np.ndarray,
                           sizes: np.ndarray) -> str:
    if self._mask_format != 'auto':
      return self._mask_format
    mask_hw = masks.shape[2:4]
    fits_images = (mask_hw[0] >= sizes[:, 0].max() and
                   mask_hw[1] >= sizes[:, 1].max())
    return 'image' if fits_images else 'box'

  def _to_coco_results(self, ids: list[Any],
                       predictions: dict[str, np.ndarray]
                       ) -> list[dict[str, Any]]:
    """Converts one batch (boxes already in original pixels) to COCO results."""
    boxes = predictions['detection_boxes']
    max_detections = boxes.shape[1]
    num_detections = np.minimum(
        predictions['num_detections'].reshape([-1]).astype(np.int64),
        max_detections)
    masks = predictions.get('detection_masks') if self._include_mask else None
    mask_format = None
    sizes = None
    if masks is not None:
      sizes = self._original_sizes(ids, predictions)
      mask_format = self._resolve_mask_format(masks, sizes)
      if mask_format == 'image' and (
          masks.shape[2] < sizes[:, 0].max() or
          masks.shape[3] < sizes[:, 1].max()):
        raise ValueError(
            f'Full-image masks of size {masks.shape[2:4]} are smaller than '
            f'the original images (up to {sizes.max(axis=0)}).')

    results = []
    for j, img_id in enumerate(ids):
      n = int(num_detections[j])
      if n <= 0:
        continue
      single = {
          'source_id': [np.array([img_id], dtype=object)],
          'detection_boxes': [boxes[j:j + 1, :n]],
          'detection_scores': [predictions['detection_scores'][j:j + 1, :n]],
          'detection_classes': [predictions['detection_classes'][j:j + 1, :n]],
      }
      if mask_format == 'box':
        # Model Garden pastes per-box masks into the original image canvas.
        single['detection_masks'] = [masks[j:j + 1, :n]]
        single['image_info'] = [np.array(
            [[sizes[j], sizes[j], [1, 1], [0, 0]]], np.float32)]
        if 'detection_outer_boxes' in predictions:
          single['detection_outer_boxes'] = [
              predictions['detection_outer_boxes'][j:j + 1, :n]]
      # One image at a time: the Model Garden converter takes the detection
      # count from the first batch and ignores `num_detections`.
      anns = coco_utils.convert_predictions_to_coco_annotations(single)
      if mask_format == 'image':
        height, width = (int(v) for v in sizes[j])
        binary = masks[j, :n, :height, :width] > self._mask_threshold
        rles = mask_api.encode(
            np.asfortranarray(binary.transpose(1, 2, 0).astype(np.uint8)))
        for ann, rle in zip(anns, rles):
          ann['segmentation'] = rle
      for ann in anns:
        results.append(self._json_ready(img_id, ann))
    return results

  @staticmethod
  def _json_ready(img_id: Any, ann: Mapping[str, Any]) -> dict[str, Any]:
    result = {
        'image_id': img_id,
        'category_id': int(ann['category_id']),
        'bbox': [float(v) for v in ann['bbox']],
        'score': float(ann['score']),
    }
    if 'segmentation' in ann:
      rle = ann['segmentation']
      counts = rle['counts']
      result['segmentation'] = {
          'size': [int(v) for v in rle['size']],
          'counts': counts.decode('ascii') if isinstance(counts, bytes)
                    else counts,
      }
    return result

  def write_results_json(self, path: str) -> None:
    """Writes the accumulated detections as a COCO results JSON (atomically).

    The file is a list of `{image_id, category_id, bbox [x, y, w, h], score}`
    entries, plus `segmentation` (RLE, `counts` as str) with masks; it loads
    with `pycocotools.coco.COCO.loadRes`.

    Args:
      path: destination file.
    """
    utils.atomic_write_json(self._coco_predictions, path)

  def evaluate(self) -> dict[str, float]:
    """Runs COCOeval over all images seen since the last reset.

    Returns:
      A flat dict of metric name -> float (see the class docstring).
    """
    if self._results_path:
      self.write_results_json(self._results_path)
    image_ids = self.image_ids
    if not image_ids:
      logging.warning('COCOEvaluator.evaluate() called without any images.')
      return {name: -1.0 for name in self._metric_names}
    # COCO `createIndex` keys results by a positive, unique `id`; shallow
    # copies keep `loadRes`'s added fields out of the stored results.
    detections = [dict(ann, id=i + 1)
                  for i, ann in enumerate(self._coco_predictions)]
    with contextlib.redirect_stdout(io.StringIO()):
      coco_dt = self._coco_gt.loadRes(predictions=detections)
    max_dets = [1, 10, self.max_num_eval_detections]
    evals = [utils.run_cocoeval(self._coco_gt, coco_dt, 'bbox', image_ids,
                          maxDets=list(max_dets))]
    if self._include_mask:
      evals.append(utils.run_cocoeval(self._coco_gt, coco_dt, 'segm', image_ids,
                                maxDets=list(max_dets)))
    stats = np.concatenate([e.stats for e in evals])
    metrics = {name: float(value)
               for name, value in zip(self._metric_names, stats)}
    if self._per_category:
      for prefix, evaluated in zip(('', 'mask_'), evals):
        metrics.update(self._per_category_ap(evaluated, prefix))
    return metrics

  def _per_category_ap(self, evaluated: cocoeval.COCOeval,
                       prefix: str) -> dict[str, float]:
    """AP@[.5:.95] per category from COCOeval's precision array."""
    # precision: [iou thresholds, recall points, categories, areas, maxDets].
    precision = evaluated.eval['precision']
    metrics = {}
    for k, category_id in enumerate(evaluated.params.catIds):
      name = self._coco_gt.cats[category_id].get('name', category_id)
      metrics[f'{prefix}AP/{name}'] = category_ap(precision, k)
    return metrics
