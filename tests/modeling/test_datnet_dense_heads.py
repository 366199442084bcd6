"""DATNet's dense auxiliary heads: the focal pixel loss by hand, the DT head
(the semantic head's trunk, K = 4 classes) and its registered target/loss."""

import math

import numpy as np
import pytest
import tensorflow as tf

from tf_mtdet.config import two_stage as two_stage_config
from tf_mtdet.losses import pixel_focal
from tf_mtdet.modeling import factory  # noqa: F401  # registers the parts
from tf_mtdet.modeling import registry
from tf_mtdet.modeling.heads import semantic_head


def test_focal_loss_by_hand():
  # Pixel 1: uniform over 3 classes, true class 0 (background, alpha 0.2):
  #   -0.2 * (1 - 1/3)^2 * ln(1/3).
  # Pixel 2: softmax [1, 1, 2] / 4, true class 2 (alpha 1): -(1/2)^2 ln(1/2).
  # Pixel 3: ignore label, not counted. Mean over the 2 labelled pixels.
  logits = tf.constant([[[[0., 0., 0.], [0., 0., math.log(2.)],
                          [5., -3., 1.]]]])
  labels = tf.constant([[[0, 2, 255]]])
  p1 = -0.2 * (2 / 3)**2 * math.log(1 / 3)
  p2 = -(0.5)**2 * math.log(0.5)
  got = pixel_focal.categorical_focal_loss(logits, labels)
  np.testing.assert_allclose(got.numpy(), (p1 + p2) / 2, rtol=1e-5)
  # gamma 0 and alpha 1 everywhere is the plain cross-entropy.
  ce = pixel_focal.categorical_focal_loss(logits, labels, gamma=0.0,
                                          alpha_background=1.0)
  np.testing.assert_allclose(
      ce.numpy(), (math.log(3) + math.log(2)) / 2, rtol=1e-5)


def test_focal_loss_resizes_logits_and_is_zero_without_labels():
  logits = tf.zeros([1, 2, 2, 4])
  labels = tf.fill([1, 4, 4], 255)
  assert pixel_focal.categorical_focal_loss(logits, labels).numpy() == 0.0
  labels = tf.zeros([1, 4, 4], tf.int32)
  np.testing.assert_allclose(
      pixel_focal.categorical_focal_loss(logits, labels).numpy(),
      -0.2 * 0.75**2 * math.log(0.25), rtol=1e-5)


def _model_cfg():
  return two_stage_config.TwoStageModel(num_classes=5)


def _pyramid(size=32, channels=8):
  return {str(l): tf.random.normal([2, size // 2**l, size // 2**l, channels])
          for l in range(2, 6)}


def test_distance_transform_head_reuses_the_semantic_trunk():
  part = two_stage_config.DistanceTransformHead(num_filters=16)
  head = registry.build('dense_aux_head', 'distance_transform', part,
                        _model_cfg())
  assert isinstance(head, semantic_head.SemanticHead)
  out = head(_pyramid())
  assert out['logits'].shape == (2, 8, 8, 4)  # stride 4, K = 4
  assert out['fusion_features'].shape == (2, 8, 8, 16)

  gen = registry.targets('dense_aux_head', 'distance_transform', part,
                         _model_cfg())
  assert gen.num_bins == 4
  (term,) = registry.losses('dense_aux_head', 'distance_transform', part,
                            _model_cfg())
  assert (term.name, term.weight) == ('distance_transform', 0.25)
  labels = {'gt_distance_transform': tf.zeros([2, 8, 8], tf.int32)}
  outputs = {'distance_transform/logits': tf.zeros([2, 8, 8, 4])}
  np.testing.assert_allclose(term.fn(outputs, labels).numpy(),
                             -0.2 * 0.75**2 * math.log(0.25), rtol=1e-5)


def test_semantic_head_focal_option():
  part = two_stage_config.SemanticHead(loss='focal')
  (term,) = registry.losses('dense_aux_head', 'semantic', part, _model_cfg())
  outputs = {'semantic/logits': tf.zeros([1, 2, 2, 5])}
  labels = {'gt_semantic': tf.fill([1, 2, 2], 3)}
  np.testing.assert_allclose(term.fn(outputs, labels).numpy(),
                             -(0.8)**2 * math.log(0.2), rtol=1e-5)
  with pytest.raises(ValueError, match='focal'):
    registry.losses('dense_aux_head', 'semantic',
                    two_stage_config.SemanticHead(loss='dice'), _model_cfg())
