"""Tests for tf_mtdet.evaluation.voc with hand-computed APs."""

import numpy as np
import pytest
import tensorflow as tf

from tf_mtdet.evaluation import voc

# Ground truth, [x, y, w, h]:
#   image 1: cat A, cat B, cat D (difficult), dog F
#   image 2: cat E, dog C, dog G (crowd)
A = [0, 0, 10, 10]
B = [20, 20, 20, 20]
D = [50, 50, 20, 20]
F = [60, 0, 40, 40]
E = [60, 60, 20, 20]
C = [0, 0, 30, 30]
G = [50, 50, 40, 40]
CAT, DOG, BIRD = 1, 2, 3

# Detections: (image, class, score, [x, y, w, h]).
DETECTIONS = [
    (1, CAT, 0.9, A),              # TP.
    (1, CAT, 0.8, D),              # On the difficult box: ignored.
    (1, CAT, 0.7, [1, 0, 10, 10]),  # IoU 90/110 with A, already matched: FP.
    (2, CAT, 0.6, E),              # TP.
    (2, CAT, 0.5, [0, 90, 5, 5]),  # Nothing there: FP.
    (1, DOG, 0.9, A),              # No dog there: FP.
    (2, DOG, 0.85, G),             # On the crowd box: ignored.
    (2, DOG, 0.8, [0, 0, 30, 20]),  # IoU 600/900 with C: TP.
    (1, DOG, 0.3, [60, 0, 40, 15]),  # IoU 600/1600 with F: FP.
    (1, BIRD, 0.7, B),             # A class without ground truth.
]
# cat: 3 positives (A, B, E; D is difficult). In score order, without the
#   ignored detection: TP, FP, TP, FP -> recall 1/3, 1/3, 2/3, 2/3,
#   precision 1, 1/2, 2/3, 1/2.
#   All-point: envelope 1 on (0, 1/3], 2/3 on (1/3, 2/3], 0 beyond
#   -> 1/3 * 1 + 1/3 * 2/3 = 5/9.
#   11-point: 1 at r = 0, .1, .2, .3; 2/3 at r = .4, .5, .6; 0 at .7..1
#   -> (4 + 3 * 2/3) / 11 = 6/11.
CAT_AP, CAT_AP07 = 5 / 9, 6 / 11
# dog: 2 positives (F, C). FP, TP, FP -> recall 0, 1/2, 1/2, precision 0, 1/2,
#   1/3. All-point: 1/2 * 1/2 = 1/4. 11-point: 1/2 at r = 0..0.5 (6 points)
#   -> 3/11.
DOG_AP, DOG_AP07 = 1 / 4, 3 / 11


@pytest.fixture
def annotation_file(write_coco_json):
  anns = [
      {'image_id': 1, 'category_id': CAT, 'bbox': A, 'difficult': 0},
      {'image_id': 1, 'category_id': CAT, 'bbox': B, 'difficult': 0},
      {'image_id': 1, 'category_id': CAT, 'bbox': D, 'difficult': 1},
      {'image_id': 1, 'category_id': DOG, 'bbox': F, 'difficult': 0},
      {'image_id': 2, 'category_id': CAT, 'bbox': E, 'difficult': 0},
      {'image_id': 2, 'category_id': DOG, 'bbox': C, 'difficult': 0},
      {'image_id': 2, 'category_id': DOG, 'bbox': G, 'iscrowd': 1},
  ]
  return write_coco_json([(1, 100, 100), (2, 100, 100)], anns,
                         [(CAT, 'cat'), (DOG, 'dog'), (BIRD, 'bird')])


def make_batch(detections, scale=1.0, padding=2):
  """Batch of both images; padding rows hold a top-scored cat on B.

  If the padding rows (beyond num_detections) were counted, the missed box B
  would become a TP and every cat AP would change.
  """
  ids = [1, 2]
  per_image = [[d for d in detections if d[0] == i] for i in ids]
  num = max(len(p) for p in per_image) + padding
  boxes = np.tile(np.array([B[1], B[0], B[1] + B[3], B[0] + B[2]],
                           np.float32) * scale, [2, num, 1])
  scores = np.ones([2, num], np.float32)
  classes = np.full([2, num], CAT, np.int32)
  for j, dets in enumerate(per_image):
    for k, (_, cls, score, (x, y, w, h)) in enumerate(dets):
      boxes[j, k] = np.array([y, x, y + h, x + w]) * scale
      scores[j, k] = score
      classes[j, k] = cls
  info = np.array([[[100, 100], [100 * scale] * 2, [scale] * 2, [0, 0]]] * 2,
                  np.float32)
  return {
      'source_id': np.array(ids),
      'image_info': info,
      'num_detections': np.array([len(p) for p in per_image]),
      'detection_boxes': boxes,
      'detection_scores': scores,
      'detection_classes': classes,
  }


@pytest.mark.parametrize('use_07_metric,cat_ap,dog_ap', [
    (False, CAT_AP, DOG_AP),
    (True, CAT_AP07, DOG_AP07),
])
def test_hand_computed_ap(annotation_file, use_07_metric, cat_ap, dog_ap):
  evaluator = voc.VOCMeanAPEvaluator(annotation_file,
                                     use_07_metric=use_07_metric)
  evaluator.update_state(None, make_batch(DETECTIONS, scale=2.0))
  metrics = evaluator.result()
  assert metrics['AP@0.5/cat'] == pytest.approx(cat_ap, abs=1e-6)
  assert metrics['AP@0.5/dog'] == pytest.approx(dog_ap, abs=1e-6)
  # bird has no ground truth: no key, not in the mean.
  assert set(metrics) == {'mAP@0.5', 'AP@0.5/cat', 'AP@0.5/dog'}
  assert metrics['mAP@0.5'] == pytest.approx((cat_ap + dog_ap) / 2, abs=1e-6)


def test_difficult_boxes_count_when_not_ignored(annotation_file):
  # cat with D as a positive (4): TP, TP, FP, TP, FP -> recall .25, .5, .5,
  # .75, .75, precision 1, 1, 2/3, 3/4, 3/5. All-point: .5 * 1 + .25 * 3/4.
  evaluator = voc.VOCMeanAPEvaluator(annotation_file, ignore_difficult=False,
                                     need_rescale_bboxes=False)
  evaluator.update_state(None, make_batch(DETECTIONS))
  assert evaluator.result()['AP@0.5/cat'] == pytest.approx(0.6875, abs=1e-6)


def test_detection_on_difficult_box_is_not_a_false_positive(annotation_file):
  # The top-scored detection is on the difficult box; the rest hit A, B, E.
  # Were it an FP, precision would be below 1 and so would AP.
  dets = [(1, CAT, 0.99, D), (1, CAT, 0.9, A), (1, CAT, 0.8, B),
          (2, CAT, 0.7, E)]
  evaluator = voc.VOCMeanAPEvaluator(annotation_file,
                                     need_rescale_bboxes=False)
  evaluator.update_state(None, make_batch(dets))
  assert evaluator.result()['AP@0.5/cat'] == pytest.approx(1.0, abs=1e-6)


def test_threshold_in_key_and_strict_matching(annotation_file):
  # At IoU 0.75 the dog TP (IoU 2/3) becomes an FP: dog AP 0; cat unchanged.
  evaluator = voc.VOCMeanAPEvaluator(annotation_file, iou_threshold=0.75,
                                     need_rescale_bboxes=False)
  batch = make_batch(DETECTIONS)
  evaluator.update_state(None, {k: tf.constant(v) for k, v in batch.items()})
  metrics = evaluator.result()
  assert metrics['AP@0.75/cat'] == pytest.approx(CAT_AP, abs=1e-6)
  assert metrics['AP@0.75/dog'] == pytest.approx(0.0, abs=1e-6)
  assert metrics['mAP@0.75'] == pytest.approx(CAT_AP / 2, abs=1e-6)


def test_split_batches_and_missing_images(annotation_file):
  # The same detections over two update calls give the same result.
  evaluator = voc.VOCMeanAPEvaluator(annotation_file,
                                     need_rescale_bboxes=False)
  full = make_batch(DETECTIONS)
  for j in range(2):
    evaluator.update_state(None, {k: v[j:j + 1] for k, v in full.items()})
  assert evaluator.result()['mAP@0.5'] == pytest.approx(
      (CAT_AP + DOG_AP) / 2, abs=1e-6)
  # Only image 2 seen: cat has 1 positive (E), found by a TP after no FP
  # (ranks: E TP, then junk FP) -> AP 1; dog: C found first -> AP 1.
  evaluator.update_state(None, {k: v[1:2] for k, v in full.items()})
  metrics = evaluator.result()
  assert metrics['AP@0.5/cat'] == pytest.approx(1.0, abs=1e-6)
  assert metrics['AP@0.5/dog'] == pytest.approx(1.0, abs=1e-6)


def test_iou_exactly_at_threshold_matches(annotation_file):
  # [0, 0, 10, 5] vs A = [0, 0, 10, 10]: IoU exactly 0.5 (VOC devkit: >=).
  dets = [(1, CAT, 0.9, [0, 0, 10, 5]), (1, CAT, 0.8, B), (2, CAT, 0.7, E)]
  evaluator = voc.VOCMeanAPEvaluator(annotation_file,
                                     need_rescale_bboxes=False)
  evaluator.update_state(None, make_batch(dets))
  assert evaluator.result()['AP@0.5/cat'] == pytest.approx(1.0, abs=1e-6)


def test_average_precision_helper():
  # One TP at full recall after one FP: envelope 1/2 everywhere.
  assert voc.average_precision([0.0, 1.0], [0.0, 0.5]) == pytest.approx(0.5)
  assert voc.average_precision([0.0, 1.0], [0.0, 0.5],
                               use_07_metric=True) == pytest.approx(0.5)
  assert voc.average_precision([], []) == 0.0
  # TP, FP, FP, TP, TP of 4 positives: precision rises after the FPs, so the
  # envelope lifts recall (.25, .5] to 0.6 (not the raw 0.5):
  # .25 * 1 + .25 * .6 + .25 * .6 = 0.55. 11-point: 1 at r = 0, .1, .2;
  # 0.6 at r = .3 .. .7; 0 after -> (3 + 5 * .6) / 11 = 6/11.
  recall = [0.25, 0.25, 0.25, 0.5, 0.75]
  precision = [1.0, 0.5, 1 / 3, 0.5, 0.6]
  assert voc.average_precision(recall, precision) == pytest.approx(0.55)
  assert voc.average_precision(recall, precision,
                               use_07_metric=True) == pytest.approx(6 / 11)
