"""Tests for tf_mtdet.evaluation.recall on a hand-built ground truth."""

import numpy as np
import pytest
import tensorflow as tf

from tf_mtdet.evaluation import recall

# Image 1: four boxes of two classes. Image 2: two boxes plus a crowd box,
# which COCOeval ignores (not a positive, a proposal on it is not counted).
GT_BOXES = {
    1: [[10, 10, 40, 30], [60, 20, 30, 30], [100, 100, 50, 60],
        [5, 150, 40, 40]],
    2: [[0, 0, 50, 50], [70, 70, 20, 40]],
}
CROWD_BOX = [120, 0, 60, 60]
IMAGES = [(1, 200, 200), (2, 200, 200)]


@pytest.fixture
def annotation_file(write_coco_json):
  anns = []
  for img_id, boxes in GT_BOXES.items():
    for k, box in enumerate(boxes):
      anns.append({'image_id': img_id, 'category_id': 1 + k % 2,
                   'bbox': box})
  anns.append({'image_id': 2, 'category_id': 1, 'bbox': CROWD_BOX,
               'iscrowd': 1})
  return write_coco_json(IMAGES, anns, [(1, 'a'), (2, 'b')])


def yxyx(box, scale=1.0):
  x, y, w, h = box
  return np.array([y, x, y + h, x + w], np.float32) * scale


def proposals(per_image, num_boxes=8, scale=1.0, pad_with=None):
  """Batch of proposals, one row per image id in `per_image`.

  Args:
    per_image: {image_id: list of [x, y, w, h] boxes, best first}.
    num_boxes: N (rows beyond the given boxes are padding).
    scale: resize factor recorded in image_info and applied to the boxes.
    pad_with: optional box written into padding rows (must not count).

  Returns:
    The predictions dict.
  """
  ids = sorted(per_image)
  boxes = np.zeros([len(ids), num_boxes, 4], np.float32)
  scores = np.zeros([len(ids), num_boxes], np.float32)
  for j, img_id in enumerate(ids):
    if pad_with is not None:
      boxes[j, :] = yxyx(pad_with, scale)
      scores[j, :] = 1.0
    for k, box in enumerate(per_image[img_id]):
      boxes[j, k] = yxyx(box, scale)
      scores[j, k] = 0.9 - 0.01 * k
  info = np.array([[[200, 200], [200 * scale] * 2, [scale, scale], [0, 0]]]
                  * len(ids), np.float32)
  return {
      'source_id': np.array(ids),
      'image_info': info,
      'proposal_boxes': boxes,
      'proposal_scores': scores,
      'num_proposals': np.array([len(per_image[i]) for i in ids]),
  }


def test_proposals_equal_to_groundtruth_give_full_recall(annotation_file):
  evaluator = recall.ProposalRecallEvaluator(annotation_file)
  # A far-off junk proposal ranked last changes nothing.
  evaluator.update_state(None, proposals(
      {i: b + [[190, 190, 5, 5]] for i, b in GT_BOXES.items()}))
  metrics = evaluator.result()
  assert metrics['AR@100'] == pytest.approx(1.0)
  assert metrics['AR@1000'] == pytest.approx(1.0)
  assert metrics['AR@100_IoU0.5'] == pytest.approx(1.0)


def test_half_of_the_boxes_missing_gives_half_recall(annotation_file):
  evaluator = recall.ProposalRecallEvaluator(annotation_file)
  # 2 of 4 boxes on image 1, 1 of 2 on image 2 (in two update calls).
  evaluator.update_state(None, proposals({1: GT_BOXES[1][:2]}))
  evaluator.update_state(None, proposals({2: GT_BOXES[2][:1]}))
  metrics = evaluator.result()
  assert metrics['AR@100'] == pytest.approx(0.5)
  assert metrics['AR@1000'] == pytest.approx(0.5)


def test_cap_on_proposals_matters(annotation_file):
  # Image 1: two junk proposals outscore the four exact ones.
  junk = [[180, 0, 10, 10], [0, 185, 8, 8]]
  evaluator = recall.ProposalRecallEvaluator(annotation_file,
                                             max_proposals=(1, 3, 10))
  evaluator.update_state(None, proposals({1: junk + GT_BOXES[1]}))
  metrics = evaluator.result()
  assert metrics['AR@1'] == pytest.approx(0.0)
  assert metrics['AR@3'] == pytest.approx(0.25)  # Only 1 of 4 within top 3.
  assert metrics['AR@10'] == pytest.approx(1.0)
  assert set(metrics) == {f'AR@{m}{s}' for m in (1, 3, 10)
                          for s in ('', '_IoU0.5', '_IoU0.75')}


def test_without_scores_the_given_order_ranks(annotation_file):
  batch = proposals({1: [[180, 0, 10, 10]] + GT_BOXES[1]})
  del batch['proposal_scores']
  evaluator = recall.ProposalRecallEvaluator(annotation_file,
                                             max_proposals=(1, 2))
  evaluator.update_state(None, batch)
  metrics = evaluator.result()
  assert metrics['AR@1'] == pytest.approx(0.0)
  assert metrics['AR@2'] == pytest.approx(0.25)


def test_padding_rows_and_crowd_boxes_are_not_counted(annotation_file):
  evaluator = recall.ProposalRecallEvaluator(annotation_file)
  # Padding rows hold the missing box 2 of image 2 with top scores; they are
  # beyond num_proposals and must not count. Image 2 also gets a proposal on
  # the crowd box, which is not a positive either way.
  evaluator.update_state(None, proposals(
      {2: [CROWD_BOX, GT_BOXES[2][0]]}, pad_with=GT_BOXES[2][1]))
  metrics = evaluator.result()
  assert metrics['AR@100'] == pytest.approx(0.5)


def test_rescale_with_image_info(annotation_file):
  evaluator = recall.ProposalRecallEvaluator(annotation_file,
                                             max_proposals=(100,))
  batch = proposals(GT_BOXES, scale=2.0)
  evaluator.update_state(None, {k: tf.constant(v) for k, v in batch.items()})
  assert evaluator.result()['AR@100'] == pytest.approx(1.0)
  # The same boxes taken as original pixels miss everything.
  evaluator = recall.ProposalRecallEvaluator(
      annotation_file, max_proposals=(100,), need_rescale_bboxes=False)
  evaluator.update_state(None, batch)
  assert evaluator.result()['AR@100'] < 0.2


def test_slightly_shifted_proposals_lose_strict_thresholds(annotation_file):
  # Shift each box right by 20% of its width: IoU = 0.8 / 1.2 = 2/3, a hit at
  # IoU thresholds 0.50..0.65 (4 of 10), a miss from 0.70 on.
  shifted = {i: [[x + 0.2 * w, y, w, h] for x, y, w, h in boxes]
             for i, boxes in GT_BOXES.items()}
  evaluator = recall.ProposalRecallEvaluator(annotation_file)
  evaluator.update_state(None, proposals(shifted))
  metrics = evaluator.result()
  assert metrics['AR@100'] == pytest.approx(0.4)
  assert metrics['AR@100_IoU0.5'] == pytest.approx(1.0)
  assert metrics['AR@100_IoU0.75'] == pytest.approx(0.0)
