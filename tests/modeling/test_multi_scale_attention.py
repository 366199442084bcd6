"""DATNet's MSPwA: every RoI pooled from every level, concatenated, and SE
attention with a global max pool (by hand on tiny inputs)."""

import numpy as np
import tensorflow as tf

from tf_mtdet.config import two_stage as two_stage_config
from tf_mtdet.modeling import factory  # noqa: F401  # registers the parts
from tf_mtdet.modeling import registry
from tf_mtdet.modeling.poolers import multi_scale_attention as mspwa


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def test_squeeze_excitation_max_pool_by_hand():
  se = mspwa.MaxPoolSqueezeExcitation(num_channels=4, reduction=2)
  # [B=1, N=1, 2, 2, C=4]; per-channel maxima over the 2 x 2 RoI: 3, -1, 2, 0
  # (the means, 1.5, -2, 0.5, -0.25, would give other weights).
  x = np.array([[[[3., -3., 2., 0.], [0., -1., 0., -1.]],
                 [[0., -3., 0., 0.], [3., -1., 0., 0.]]]], np.float32)
  x = x[np.newaxis]
  se(tf.constant(x))
  w1 = np.array([[1., 0.], [0., 1.], [0., 0.], [0., 0.]], np.float32)
  w2 = np.array([[1., 0., -1., 0.], [0., 2., 0., 0.]], np.float32)
  b2 = np.array([0., 0., 0., 0.5], np.float32)
  se.set_weights([w1, np.zeros(2, np.float32), w2, b2])
  # squeeze: relu([3, -1]) = [3, 0]; excite: sigmoid([3, 0, -3, 0.5]).
  scale = _sigmoid(np.array([3., 0., -3., 0.5]))
  np.testing.assert_allclose(se(tf.constant(x)).numpy(), x * scale,
                             rtol=1e-5, atol=1e-6)


def test_pooler_pools_every_level_for_every_box():
  channels = 8
  # P_l[y, x] = x * 2**l: the input-pixel x of the cell, so RoIAlign on any
  # level reproduces the sample points' x (bilinear is exact on a ramp).
  features = {}
  for level in range(2, 7):
    size = 128 // 2**level
    ramp = np.tile((np.arange(size) * 2.0**level)[None, :, None],
                   [size, 1, channels])
    features[str(level)] = tf.constant(ramp[None], tf.float32)
  boxes = tf.constant([[[20., 20., 44., 44.], [22., 24., 40., 36.]]])
  cfg = two_stage_config.TwoStageModel(num_classes=3)
  cfg.decoder.fpn.num_filters = channels
  cfg.roi_aligner.type = 'multi_scale_attention'
  cfg.roi_aligner.attention_reduction = 4
  pooler = registry.build('roi_pooler', 'multi_scale_attention', cfg)
  out = pooler(features, boxes)
  assert out.shape == (1, 2, 7, 7, 4 * channels)  # P2-P5 only, not P6
  # Excitation fixed per level block (W2 = 0, bias logit(w)): the pooler's
  # output is the concatenated crops times w, so attention that is computed
  # but not applied (or applied to the wrong channels) fails; 1 would not.
  kernel_1, bias_1, kernel_2, bias_2 = pooler.attention.get_weights()
  assert kernel_1.shape == (32, 8) and kernel_2.shape == (8, 32)
  block_weights = np.array([0.2, 0.4, 0.6, 0.8], np.float32)
  logits = np.log(block_weights / (1 - block_weights))
  pooler.attention.set_weights([kernel_1, bias_1, 0 * kernel_2,
                                np.repeat(logits, channels)])
  out = pooler(features, boxes).numpy()
  for i, (x1, x2) in enumerate([(20., 44.), (24., 36.)]):
    expected_x = x1 + (np.arange(7) + 0.5) * (x2 - x1) / 7
    for block in range(4):
      np.testing.assert_allclose(
          out[0, i, 3, :, block * channels],
          block_weights[block] * expected_x, rtol=1e-4)


def test_mask_pooler_registration_uses_the_mask_crop_size():
  cfg = two_stage_config.TwoStageModel(num_classes=3)
  cfg.mask_roi_aligner.type = 'multi_scale_attention'
  pooler = registry.build('mask_roi_pooler', 'multi_scale_attention', cfg)
  assert pooler.get_config()['crop_size'] == 14
  assert pooler.get_config()['level_filters'] == 256
  clone = mspwa.MultiScaleAttentionPooler.from_config(pooler.get_config())
  assert clone.get_config()['levels'] == [2, 5]
