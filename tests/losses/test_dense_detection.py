"""RetinaNet's loss terms against values worked by hand (focal loss with the
paper's alpha 0.25 and gamma 2 as the shipped config sets them; Huber box
loss), both over the positives + 1."""

import math

import numpy as np
import pytest
import tensorflow as tf

from tf_mtdet.config import experiment
from tf_mtdet.losses import dense_detection


def _sigmoid(x):
  return 1.0 / (1.0 + math.exp(-x))


def _focal(logit, positive, alpha=0.25, gamma=2.0):
  """-alpha_t (1 - p_t)^gamma log(p_t) (Lin et al., eq. 5)."""
  p = _sigmoid(logit)
  p_t = p if positive else 1.0 - p
  alpha_t = alpha if positive else 1.0 - alpha
  return -alpha_t * (1.0 - p_t)**gamma * math.log(p_t)


@pytest.fixture(name='terms')
def _terms():
  config = experiment.load_config('retinanet/retinanet_r50_fpn_1x_coco',
                                  ['model.single_shot.num_classes=3'])
  return {t.name: t for t in
          dense_detection.focal_terms(config.model.single_shot)}


def _case():
  """Two anchors at level 3: anchor 0 of class 1, anchor 1 background."""
  logits = [[0.0, 2.0, -1.0], [1.0, 0.0, -3.0]]
  outputs = {
      'cls_outputs': {'3': tf.constant([[[logits[0], logits[1]]]])},
      'box_outputs': {'3': tf.constant([[[[0.05, -0.3, 0.0, 0.2],
                                          [9.0, 9.0, 9.0, 9.0]]]])}}
  labels = {'cls_targets': {'3': tf.constant([[[[1], [0]]]])},
            'box_targets': {'3': tf.zeros([1, 1, 2, 4])},
            'cls_weights': tf.constant([[1.0, 1.0]]),
            'box_weights': tf.constant([[1.0, 0.0]])}
  return logits, outputs, labels


def test_focal_loss_value_by_hand(terms):
  logits, outputs, labels = _case()
  # One-hot targets: anchor 0 -> class 1, anchor 1 -> class 0.
  expected = sum(_focal(logits[0][c], c == 1) for c in range(3))
  expected += sum(_focal(logits[1][c], c == 0) for c in range(3))
  expected /= 1 + 1  # positives + 1
  # Worked on paper: anchor 0: 0.12997 (class 0, p 0.5) + 0.00045 +
  # 0.01699; anchor 1: 0.00566 + 0.12997 + 0.00008; sum 0.28313 / 2.
  assert expected == pytest.approx(0.141565, abs=2e-5)
  np.testing.assert_allclose(terms['cls'].fn(outputs, labels), expected,
                             rtol=1e-5)
  # gamma 0 (plain weighted cross-entropy) would give far more.
  plain = (sum(_focal(logits[0][c], c == 1, gamma=0.) for c in range(3)) +
           sum(_focal(logits[1][c], c == 0, gamma=0.) for c in range(3))) / 2
  assert plain > 1.5 * expected


def test_box_huber_value_by_hand(terms):
  _, outputs, labels = _case()
  # Huber (delta 0.1) of (0.05, -0.3, 0, 0.2): 0.00125 + 0.025 + 0 + 0.015,
  # averaged over the 4 coordinates, anchor 1 weighted out, / (1 + 1).
  expected = (0.00125 + 0.025 + 0.0 + 0.015) / 4 / 2
  np.testing.assert_allclose(terms['box'].fn(outputs, labels), expected,
                             rtol=1e-5)
  assert terms['box'].weight == 50.0
