"""DATNet's multi-scale pooling with attention, MSPwA (Levinshtein et al.,
Sec. 3.2-3.3, Fig. 3).

Every RoI is pooled (RoIAlign, k x k) from every pyramid level in `levels`
instead of the one level its size assigns (FPN eq. 1); the crops are
concatenated channel-wise (4 x 256 = 1024 channels for P2-P5) and re-weighted
by squeeze-and-excitation attention whose squeeze is a global **max** pool:
a = sigmoid(W2 relu(W1 max_{y,x} X)), output X * a, with W1: C -> C / r and
W2: C / r -> C (r = 16). Registered as 'multi_scale_attention' for the box
('roi_pooler') and the mask ('mask_roi_pooler') branch.
"""

from typing import Mapping, Optional, Sequence

import tensorflow as tf
import tf_keras

from official.vision.ops import spatial_transform_ops

from tf_mtdet.config import two_stage as two_stage_config
from tf_mtdet.modeling import layer_config
from tf_mtdet.modeling import registry


@tf_keras.utils.register_keras_serializable(package='tf_mtdet')
class MaxPoolSqueezeExcitation(layer_config.RegularizedLayerConfig,
                               tf_keras.layers.Layer):
  """Per-RoI channel attention: [B, N, k, k, C] -> same shape, each channel
  scaled by sigmoid(W2 relu(W1 max over k x k))."""

  def __init__(self, num_channels: int, reduction: int = 16,
               kernel_regularizer: Optional[
                   tf_keras.regularizers.Regularizer] = None, **kwargs):
    super().__init__(**kwargs)
    if num_channels % reduction:
      raise ValueError(f'{num_channels} channels do not divide by the '
                       f'reduction {reduction}')
    self._config_dict = dict(num_channels=num_channels, reduction=reduction,
                             kernel_regularizer=kernel_regularizer)
    self._squeeze = tf_keras.layers.Dense(
        num_channels // reduction, activation='relu',
        kernel_regularizer=kernel_regularizer, name='squeeze')
    self._excite = tf_keras.layers.Dense(
        num_channels, activation='sigmoid',
        kernel_regularizer=kernel_regularizer, name='excite')

  def call(self, roi_features: tf.Tensor) -> tf.Tensor:
    pooled = tf.reduce_max(roi_features, axis=[2, 3])  # [B, N, C]
    weights = self._excite(self._squeeze(pooled))
    return roi_features * tf.cast(weights[:, :, tf.newaxis, tf.newaxis, :],
                                  roi_features.dtype)


@tf_keras.utils.register_keras_serializable(package='tf_mtdet')
class MultiScaleAttentionPooler(layer_config.RegularizedLayerConfig,
                                tf_keras.layers.Layer):
  """`(features {level: [B, H_l, W_l, F]}, boxes [B, N, 4] yxyx input
  pixels) -> [B, N, k, k, L * F]`, L = the number of levels pooled."""

  def __init__(self, crop_size: int = 7, levels: Sequence[int] = (2, 5),
               level_filters: int = 256, reduction: int = 16,
               sample_offset: float = 0.5,
               kernel_regularizer: Optional[
                   tf_keras.regularizers.Regularizer] = None, **kwargs):
    """Initializes the pooler.

    Args:
      crop_size: k.
      levels: [min, max] pyramid levels pooled, all of them for every RoI.
      level_filters: Channels F of each level.
      reduction: SE reduction ratio r.
      sample_offset: RoIAlign's sub-pixel sample offset.
      kernel_regularizer: For the SE weights.
      **kwargs: Layer arguments.
    """
    super().__init__(**kwargs)
    self._config_dict = dict(
        crop_size=crop_size, levels=list(levels), level_filters=level_filters,
        reduction=reduction, sample_offset=sample_offset,
        kernel_regularizer=kernel_regularizer)
    self._levels = list(range(int(levels[0]), int(levels[1]) + 1))
    self.attention = MaxPoolSqueezeExcitation(
        len(self._levels) * level_filters, reduction,
        kernel_regularizer=kernel_regularizer, name='attention')

  def call(self, features: Mapping[str, tf.Tensor],
           boxes: tf.Tensor) -> tf.Tensor:
    cfg = self._config_dict
    # A one-level pyramid makes Model Garden's multilevel RoIAlign pool every
    # box from that level (its level assignment clamps to the only one).
    crops = [
        spatial_transform_ops.multilevel_crop_and_resize(
            {str(level): features[str(level)]}, boxes,
            output_size=cfg['crop_size'], sample_offset=cfg['sample_offset'])
        for level in self._levels]
    return self.attention(tf.concat(crops, axis=-1))


def _build(aligner, config: two_stage_config.TwoStageModel, l2_regularizer,
           name: str) -> MultiScaleAttentionPooler:
  return MultiScaleAttentionPooler(
      crop_size=aligner.crop_size, levels=aligner.multi_scale_levels,
      level_filters=config.decoder.get().num_filters,
      reduction=aligner.attention_reduction,
      sample_offset=aligner.sample_offset, kernel_regularizer=l2_regularizer,
      name=name)


@registry.register('roi_pooler', 'multi_scale_attention')
def build_box_pooler(config: two_stage_config.TwoStageModel,
                     l2_regularizer=None) -> MultiScaleAttentionPooler:
  return _build(config.roi_aligner, config, l2_regularizer, 'roi_pooler')


@registry.register('mask_roi_pooler', 'multi_scale_attention')
def build_mask_pooler(config: two_stage_config.TwoStageModel,
                      l2_regularizer=None) -> MultiScaleAttentionPooler:
  return _build(config.mask_roi_aligner, config, l2_regularizer,
                'mask_roi_pooler')
