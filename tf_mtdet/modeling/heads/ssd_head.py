"""SSD's dense head: per level one conv3x3 to A_l x C class scores and one
conv3x3 to A_l x 4 box offsets (A_l priors per location of that level).

A registered 'dense_head' ('ssd') that owns its targets (MultiBox matching on
SSD priors) and its loss (softmax CE with hard negative mining + smooth L1).
"""

from typing import Any, Mapping, Optional, Sequence

import tensorflow as tf
import tf_keras

from tf_mtdet.data.targets import ssd_matching
from tf_mtdet.losses import ssd as ssd_losses
from tf_mtdet.modeling import registry
from tf_mtdet.modeling import ssd_anchors
from tf_mtdet.modeling import ssd_extra_levels


@tf_keras.utils.register_keras_serializable(package='tf_mtdet')
class SSDHead(tf_keras.layers.Layer):
  """Pyramid {level: [B, H_l, W_l, C_l]} -> `cls_outputs` {level: [B, H_l,
  W_l, A_l * num_classes]} logits and `box_outputs` {level: [B, H_l, W_l,
  A_l * 4]} offsets (scaled by 1 / variance)."""

  def __init__(self, num_classes: int, min_level: int,
               num_anchors: Sequence[int],
               kernel_regularizer: Optional[
                   tf_keras.regularizers.Regularizer] = None,
               **kwargs):
    """Initializes the head.

    Args:
      num_classes: Classes including background.
      min_level: Level of `num_anchors[0]`.
      num_anchors: Priors per location, per level from `min_level` up.
      kernel_regularizer: Conv kernel regularizer.
      **kwargs: Layer arguments.
    """
    super().__init__(**kwargs)
    self._config_dict = dict(num_classes=num_classes, min_level=min_level,
                             num_anchors=list(num_anchors),
                             kernel_regularizer=kernel_regularizer)
    conv = lambda filters, name: tf_keras.layers.Conv2D(
        filters, 3, padding='same', kernel_regularizer=kernel_regularizer,
        kernel_initializer=tf_keras.initializers.RandomNormal(stddev=0.01),
        name=name)
    self._cls = {}
    self._box = {}
    for i, anchors in enumerate(num_anchors):
      level = str(min_level + i)
      self._cls[level] = conv(anchors * num_classes, f'cls_l{level}')
      self._box[level] = conv(anchors * 4, f'box_l{level}')

  def call(self, features: Mapping[str, tf.Tensor]) -> dict[str, Any]:
    return {'cls_outputs': {l: conv(features[l])
                            for l, conv in self._cls.items()},
            'box_outputs': {l: conv(features[l])
                            for l, conv in self._box.items()}}

  def get_config(self) -> Mapping[str, Any]:
    config = dict(self._config_dict)
    config['kernel_regularizer'] = tf_keras.regularizers.serialize(
        config['kernel_regularizer']) if config['kernel_regularizer'] else None
    return {**super().get_config(), **config}

  @classmethod
  def from_config(cls, config, custom_objects=None):
    config = dict(config)
    if config.get('kernel_regularizer'):
      config['kernel_regularizer'] = tf_keras.regularizers.deserialize(
          config['kernel_regularizer'])
    return cls(**config)


def model_feature_sizes(config):
  """[H, W] input -> {level: (H_l, W_l)} of a single-shot config's pyramid
  (backbone levels and extra levels, each a stride-2 step rounding up; the
  neck keeps the sizes)."""

  def sizes(image_size):
    return ssd_extra_levels.feature_sizes(
        image_size, config.min_level, config.max_level,
        bool(config.extra_levels.num_levels) and
        config.extra_levels.global_pool_level)

  return sizes


def _targets(config) -> ssd_matching.SSDTargets:
  return ssd_matching.SSDTargets(
      config.ssd_anchors, model_feature_sizes(config),
      config.anchor_targets.match_threshold, config.head.ssd_loss.variances)


@registry.register('dense_head', 'ssd', targets=_targets,
                   losses=ssd_losses.multibox_terms)
def build_ssd_head(config, l2_regularizer=None) -> SSDHead:
  """SSD's head for a single-shot config (priors from `ssd_anchors`)."""
  num_anchors = ssd_anchors.num_anchors_per_location(config.ssd_anchors)
  levels = config.max_level - config.min_level + 1
  if len(num_anchors) != levels:
    raise ValueError(f'ssd_anchors describe {len(num_anchors)} levels, '
                     f'min_level..max_level has {levels}')
  return SSDHead(config.num_classes, config.min_level, num_anchors,
                 kernel_regularizer=l2_regularizer, name='head')
