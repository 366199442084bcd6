"""Class-agnostic proposal recall (AR@100, AR@1000) with pycocotools."""

from __future__ import annotations

import contextlib
import io
from typing import Any, Mapping, Sequence

import numpy as np

from official.vision.ops import box_ops
from tf_mtdet.evaluation import utils


class ProposalRecallEvaluator:
  """Average recall of region proposals, COCO style.

  Recall is computed by pycocotools `COCOeval` with `useCats=0` (proposals
  match ground truth of any category), averaged over IoU thresholds
  0.50:0.05:0.95, area 'all'. Crowd ground truth is ignored as COCOeval does
  (a proposal on it is neither a hit nor counted). Each cap in
  `max_proposals` keeps the top-scoring proposals of each image.

  Result keys, for every cap `M` in `max_proposals`: `AR@M` (mean over IoU
  thresholds), `AR@M_IoU0.5` and `AR@M_IoU0.75`. Values are -1 when the
  evaluated images have no (non-crowd) ground truth.
  """

  def __init__(self,
               annotation_file: str,
               max_proposals: Sequence[int] = (100, 1000),
               need_rescale_bboxes: bool = True):
    """Constructs the evaluator.

    Args:
      annotation_file: COCO-format ground-truth JSON (local or gfile path).
      max_proposals: caps on proposals per image to report recall at.
      need_rescale_bboxes: True if `proposal_boxes` are in pixels of the
        resized image (divided by `image_info[:, 2]`), False if they are in
        original-image pixels.
    """
    if not max_proposals:
      raise ValueError('`max_proposals` must name at least one cap.')
    self._max_proposals = sorted({int(m) for m in max_proposals})
    self._need_rescale_bboxes = need_rescale_bboxes
    self._annotation_file = annotation_file
    self._coco_gt = utils.load_coco_groundtruth(annotation_file, 'box')
    # With useCats=0 the category only has to be one COCOeval knows about.
    self._any_category = sorted(self._coco_gt.getCatIds())[0]
    self.reset_states()

  @property
  def name(self) -> str:
    return 'proposal_recall'

  def reset_states(self) -> None:
    """Clears the accumulated proposals."""
    self._results: list[dict[str, Any]] = []
    self._image_ids: set[Any] = set()

  def update_state(self, groundtruths: Mapping[str, Any] | None,
                   predictions: Mapping[str, Any]) -> None:
    """Stores one batch of proposals.

    Args:
      groundtruths: ignored; ground truth comes from `annotation_file`.
      predictions: dict of batched arrays or tensors:
        - source_id: [B] image ids as in the annotation file.
        - image_info: [B, 4, 2] (needed when `need_rescale_bboxes`).
        - proposal_boxes: [B, N, 4] [ymin, xmin, ymax, xmax] pixels.
        - proposal_scores (optional): [B, N]; without it the given order is
          the ranking.
        - num_proposals (optional): [B] number of valid proposals.

    Raises:
      ValueError: on missing fields or unknown image ids.
    """
    del groundtruths  # Ground truth comes from the annotation file.
    predictions = utils.dict_to_numpy(predictions)
    required = ['source_id', 'proposal_boxes']
    if self._need_rescale_bboxes:
      required.append('image_info')
    ids = utils.checked_image_ids(predictions, required, self._coco_gt.imgs,
                                  self._annotation_file)

    boxes = predictions['proposal_boxes'].astype(np.float64)
    batch_size, num_boxes = boxes.shape[:2]
    if self._need_rescale_bboxes:
      scale = predictions['image_info'][:, 2, :].astype(np.float64)
      boxes = boxes / np.tile(scale, [1, 2])[:, None, :]
    boxes = box_ops.yxyx_to_xywh(boxes)
    if 'proposal_scores' in predictions:
      scores = predictions['proposal_scores'].astype(np.float64)
    else:
      # Rank order as score: the first proposal is the most confident.
      scores = np.broadcast_to(
          1.0 - np.arange(num_boxes) / max(num_boxes, 1),
          (batch_size, num_boxes))
    if 'num_proposals' in predictions:
      counts = np.minimum(
          predictions['num_proposals'].reshape([-1]).astype(np.int64),
          num_boxes)
    else:
      counts = np.full([batch_size], num_boxes)

    for j, img_id in enumerate(ids):
      for k in range(int(counts[j])):
        self._results.append({
            'image_id': img_id,
            'category_id': self._any_category,
            'bbox': [float(v) for v in boxes[j, k]],
            'score': float(scores[j, k]),
        })
    self._image_ids.update(ids)

  def evaluate(self) -> dict[str, float]:
    """Computes recall over the images seen since the last reset."""
    names = []
    for cap in self._max_proposals:
      names += [f'AR@{cap}', f'AR@{cap}_IoU0.5', f'AR@{cap}_IoU0.75']
    if not self._image_ids:
      return {name: -1.0 for name in names}
    results = [dict(ann, id=i + 1) for i, ann in enumerate(self._results)]
    with contextlib.redirect_stdout(io.StringIO()):
      coco_dt = self._coco_gt.loadRes(predictions=results)
    evaluated = utils.run_cocoeval(
        self._coco_gt, coco_dt, 'bbox', sorted(self._image_ids),
        summarize=False, useCats=0, maxDets=list(self._max_proposals),
        # Only area 'all' is reported; skipping the others saves 3/4 of the
        # per-image matching work.
        areaRng=[[0.0, 1e10]], areaRngLbl=['all'])
    # recall: [iou thresholds, categories (1 with useCats=0), areas, maxDets];
    # -1 marks "no ground truth".
    recall = evaluated.eval['recall'][:, 0, 0, :]
    iou_thresholds = evaluated.params.iouThrs
    metrics = {}
    for m, cap in enumerate(self._max_proposals):
      per_iou = recall[:, m]
      valid = per_iou[per_iou > -1]
      metrics[f'AR@{cap}'] = float(valid.mean()) if valid.size else -1.0
      for label, threshold in (('0.5', 0.5), ('0.75', 0.75)):
        t = int(np.argmin(np.abs(iou_thresholds - threshold)))
        metrics[f'AR@{cap}_IoU{label}'] = float(per_iou[t])
    return metrics

  def result(self) -> dict[str, float]:
    """Evaluates and resets the state."""
    metrics = self.evaluate()
    self.reset_states()
    return metrics
