"""DATNet's dense auxiliary heads: the focal pixel loss by hand, the Sec. 3.3
trunk (P2-P6, l - 2 conv + ReLU + x2 stages per level, summed, two convs, a
3x3 classifier, no norm) by value, the DT head (K = 4 classes) and its
registered target/loss, and targets at another stride than the logits
refused."""

import math

import numpy as np
import pytest
import tensorflow as tf

from tf_mtdet.config import two_stage as two_stage_config
from tf_mtdet.losses import pixel_focal
from tf_mtdet.modeling import factory  # noqa: F401  # registers the parts
from tf_mtdet.modeling import registry
from tf_mtdet.modeling.heads import datnet_dense_head
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


def test_focal_loss_upsamples_by_its_factor_and_is_zero_without_labels():
  logits = tf.zeros([1, 2, 2, 4])
  labels = tf.fill([1, 4, 4], 255)
  assert pixel_focal.categorical_focal_loss(logits, labels,
                                            upsample=2).numpy() == 0.0
  labels = tf.zeros([1, 4, 4], tf.int32)
  np.testing.assert_allclose(
      pixel_focal.categorical_focal_loss(logits, labels, upsample=2).numpy(),
      -0.2 * 0.75**2 * math.log(0.25), rtol=1e-5)


def test_targets_at_another_stride_than_the_logits_are_an_error():
  # DT: target and logits at the head's stride; a stride-2 (or stride-8)
  # target for stride-4 logits is refused, not resized.
  part = two_stage_config.DistanceTransformHead()
  (dt,) = registry.losses('dense_aux_head', 'distance_transform', part,
                          _model_cfg())
  outputs = {'distance_transform/logits': tf.zeros([1, 8, 8, 4])}
  for size in (16, 4):
    labels = {'gt_distance_transform': tf.zeros([1, size, size], tf.int32)}
    with pytest.raises(ValueError, match='another stride'):
      dt.fn(outputs, labels)
  # Semantic: the target is at the output size (stride 1), the logits at
  # 2**levels[0] = 4; both losses upsample by exactly 4.
  for loss in ('focal', 'cross_entropy'):
    (term,) = registry.losses('dense_aux_head', 'semantic',
                              two_stage_config.SemanticHead(loss=loss),
                              _model_cfg())
    outputs = {'semantic/logits': tf.zeros([1, 8, 8, 5])}
    assert np.isfinite(term.fn(
        outputs, {'gt_semantic': tf.zeros([1, 32, 32], tf.int32)}).numpy())
    with pytest.raises(ValueError, match='another stride'):
      term.fn(outputs, {'gt_semantic': tf.zeros([1, 16, 16], tf.int32)})
  # Unknown static sizes: the check runs in the graph.
  check = tf.function(
      lambda logits, labels: pixel_focal.categorical_focal_loss(
          logits, labels, upsample=4),
      input_signature=[tf.TensorSpec([1, None, None, 5]),
                       tf.TensorSpec([1, None, None], tf.int32)])
  check(tf.zeros([1, 2, 2, 5]), tf.zeros([1, 8, 8], tf.int32))
  with pytest.raises(tf.errors.InvalidArgumentError, match='another stride'):
    check(tf.zeros([1, 2, 2, 5]), tf.zeros([1, 4, 4], tf.int32))


def _model_cfg():
  return two_stage_config.TwoStageModel(num_classes=5)


def _pyramid(size=64, channels=8, levels=(2, 6)):
  return {str(l): tf.random.normal([2, size // 2**l, size // 2**l, channels])
          for l in range(levels[0], levels[1] + 1)}


def _set_centre_taps(conv, value):
  """A 1 -> 1 channel conv3x3 computing value * x (centre tap only)."""
  kernel = np.zeros(conv.kernel.shape, np.float32)
  kernel[1, 1] = value
  conv.kernel.assign(kernel)
  conv.bias.assign(np.zeros(conv.bias.shape, np.float32))


def test_datnet_trunk_stages_per_level_by_value():
  # One channel, constant levels P_l = c_l. A stage conv multiplies by 3
  # (ReLU keeps it, bilinear x2 of a constant is the constant), the fused
  # convs by 1 and the classifier by 1, so every pixel of F and the logits
  # is sum_l 3**(l - 2) c_l: P2 passes with no stage, P6 (included) with 4.
  head = datnet_dense_head.DATNetDenseHead(num_classes=1, num_filters=1)
  consts = {2: 1.0, 3: 2.0, 4: -1.0, 5: 0.5, 6: 0.25}
  features = {str(l): tf.fill([1, 64 // 2**l, 64 // 2**l, 1], c)
              for l, c in consts.items()}
  head(features)
  stages = {l: len(head._upsampling_convs[str(l)]) for l in consts}  # pylint: disable=protected-access
  assert stages == {2: 0, 3: 1, 4: 2, 5: 3, 6: 4}
  for convs in head._upsampling_convs.values():  # pylint: disable=protected-access
    for conv in convs:
      _set_centre_taps(conv, 3.0)
  for conv in head._fused_convs + [head._classifier]:  # pylint: disable=protected-access
    _set_centre_taps(conv, 1.0)
  out = head(features)
  # P4 = -1: ReLU after its first stage zeroes it.
  want = 1.0 + 3 * 2.0 + 0.0 + 27 * 0.5 + 81 * 0.25
  assert out['logits'].shape == (1, 16, 16, 1)
  np.testing.assert_allclose(out['fusion_features'].numpy(), want, rtol=1e-5)
  np.testing.assert_allclose(out['logits'].numpy(), want, rtol=1e-5)
  # 3x3 everywhere (the classifier too), no normalisation: weights are the
  # convs' kernels and biases only.
  assert head._classifier.kernel_size == (3, 3)  # pylint: disable=protected-access
  assert len(head.trainable_weights) == 2 * (10 + 2 + 1)
  assert not head.non_trainable_weights
  restored = datnet_dense_head.DATNetDenseHead.from_config(head.get_config())
  assert restored.get_config() == head.get_config()


def test_distance_transform_head_is_the_datnet_trunk():
  part = two_stage_config.DistanceTransformHead(num_filters=16)
  assert (part.architecture, part.levels) == ('datnet', [2, 6])
  head = registry.build('dense_aux_head', 'distance_transform', part,
                        _model_cfg())
  assert isinstance(head, datnet_dense_head.DATNetDenseHead)
  out = head(_pyramid(channels=16))
  assert out['logits'].shape == (2, 16, 16, 4)  # stride 4, K = 4
  assert out['fusion_features'].shape == (2, 16, 16, 16)
  with pytest.raises(ValueError, match='num_filters is 16 but pyramid level '
                     '2 has 8 channels'):
    registry.build('dense_aux_head', 'distance_transform', part,
                   _model_cfg())(_pyramid(channels=8))
  # The semantic head keeps the Panoptic-FPN trunk unless asked.
  semantic = two_stage_config.SemanticHead()
  assert isinstance(registry.build('dense_aux_head', 'semantic', semantic,
                                   _model_cfg()), semantic_head.SemanticHead)
  semantic.architecture = 'datnet'
  assert isinstance(registry.build('dense_aux_head', 'semantic', semantic,
                                   _model_cfg()),
                    datnet_dense_head.DATNetDenseHead)
  semantic.architecture = 'fpn'
  with pytest.raises(ValueError, match='architecture'):
    registry.build('dense_aux_head', 'semantic', semantic, _model_cfg())

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
  labels = {'gt_semantic': tf.fill([1, 8, 8], 3)}  # output size: x4
  np.testing.assert_allclose(term.fn(outputs, labels).numpy(),
                             -(0.8)**2 * math.log(0.2), rtol=1e-5)
  with pytest.raises(ValueError, match='focal'):
    registry.losses('dense_aux_head', 'semantic',
                    two_stage_config.SemanticHead(loss='dice'), _model_cfg())
