"""Tests for tf_mtdet.evaluation.segmentation with a hand-computed case."""

import numpy as np
import pytest
import tensorflow as tf

from tf_mtdet.evaluation import segmentation

# One 2x3 image; 255 is ignored (its prediction 0 must not count).
GT = np.array([[[0, 0, 1],
                [1, 2, 255]]])
PRED = np.array([[[0, 1, 1],
                  [1, 2, 0]]])
# Valid (gt, pred) pairs: (0,0) (0,1) (1,1) (1,1) (2,2). Confusion (rows gt):
#   [[1, 1, 0],
#    [0, 2, 0],
#    [0, 0, 1]]
# IoU0 = 1 / (2 + 1 - 1) = 1/2, IoU1 = 2 / (2 + 3 - 2) = 2/3, IoU2 = 1.
# Class 3 occurs nowhere: not in the mean. Pixel accuracy = 4 / 5.
EXPECTED_IOU = {'background': 0.5, 'road': 2 / 3, 'car': 1.0}
EXPECTED_MIOU = (0.5 + 2 / 3 + 1.0) / 3
NAMES = ['background', 'road', 'car', 'sky']


def one_hot_logits(labels, num_classes=4):
  # Scaled one-hot plus noise below the margin: argmax is `labels`.
  rng = np.random.default_rng(0)
  logits = 5.0 * np.eye(num_classes)[labels]
  return (logits + rng.uniform(-1, 1, logits.shape)).astype(np.float32)


@pytest.mark.parametrize('as_logits', [False, True])
def test_hand_computed_confusion(as_logits):
  evaluator = segmentation.SemanticIoUEvaluator(4, class_names=NAMES)
  pred = one_hot_logits(PRED) if as_logits else PRED
  evaluator.update_state({'semantic': GT}, {'semantic': pred})
  np.testing.assert_array_equal(
      evaluator.confusion_matrix[:3, :3], [[1, 1, 0], [0, 2, 0], [0, 0, 1]])
  metrics = evaluator.result()
  assert metrics['mIoU'] == pytest.approx(EXPECTED_MIOU, abs=1e-9)
  assert metrics['pixel_accuracy'] == pytest.approx(0.8, abs=1e-9)
  for name, value in EXPECTED_IOU.items():
    assert metrics[f'IoU/{name}'] == pytest.approx(value, abs=1e-9)
  assert 'IoU/sky' not in metrics
  # result() resets the confusion matrix.
  assert not evaluator.confusion_matrix.any()


def test_batches_accumulate_and_tensors_are_accepted():
  evaluator = segmentation.SemanticIoUEvaluator(4, ignore_label=255)
  evaluator.update_state({'semantic': tf.constant(GT)},
                         {'semantic': tf.constant(PRED)})
  # A second, perfect image of class 3 (with a trailing channel axis).
  evaluator.update_state({'semantic': np.full([1, 2, 3, 1], 3)},
                         {'semantic': np.full([1, 2, 3], 3)})
  metrics = evaluator.result()
  assert metrics['mIoU'] == pytest.approx((0.5 + 2 / 3 + 1.0 + 1.0) / 4)
  assert metrics['pixel_accuracy'] == pytest.approx(10 / 11)
  assert metrics['IoU/3'] == pytest.approx(1.0)


def test_without_ignore_label_every_pixel_counts():
  evaluator = segmentation.SemanticIoUEvaluator(3, ignore_label=None)
  gt = np.array([[[0, 1]]])
  evaluator.update_state({'semantic': gt}, {'semantic': np.array([[[0, 0]]])})
  metrics = evaluator.result()
  # Confusion [[1, 0], [1, 0]]: IoU0 = 1/2, IoU1 = 0.
  assert metrics['mIoU'] == pytest.approx(0.25)
  assert metrics['pixel_accuracy'] == pytest.approx(0.5)


def test_invalid_inputs_raise():
  evaluator = segmentation.SemanticIoUEvaluator(3)
  with pytest.raises(ValueError, match='outside'):
    evaluator.update_state({'semantic': np.array([[[0, 5]]])},
                           {'semantic': np.array([[[0, 0]]])})
  with pytest.raises(ValueError, match='does not match'):
    evaluator.update_state({'semantic': np.zeros([1, 2, 2], int)},
                           {'semantic': np.zeros([1, 2, 3], int)})
  with pytest.raises(ValueError, match='channels'):
    evaluator.update_state({'semantic': np.zeros([1, 2, 2], int)},
                           {'semantic': np.zeros([1, 2, 2, 4])})
  assert evaluator.result() == {'mIoU': -1.0, 'pixel_accuracy': -1.0}
