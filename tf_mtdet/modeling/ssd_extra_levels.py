"""SSD extra levels after a backbone (BlitzNet's ResNet-50 SSD, IvaNet's trunk).

The pretrained backbone (any registered one; Model Garden's ResNet-50
through conv5_x for IvaNet) gives the finest levels; this module continues
from its coarsest level with `num_levels` levels of bottleneck units (the
first unit stride 2), then optionally one level that is the global average
of the last (BlitzNet's `pool6`). It is a separate sub-module of the model,
so the backbone's object graph is exactly the pretrained network's and a
Model Garden backbone checkpoint restores into it.

BlitzNet (github dvornikita/blitznet `resnet.py`, `config.py`): two
bottleneck units per extra level, 2048 outputs (bottleneck 512); at 300 the
levels are conv3_x/conv4_x/conv5_x 38/19/10, extras 5/3, pool 1; at 512
64/32/16, extras 8/4/2, pool 1.
"""

import math
from typing import Any, Mapping, Optional, Sequence

import tensorflow as tf
import tf_keras

from official.vision.modeling.layers import nn_blocks


def feature_sizes(image_size: Sequence[int], min_level: int, max_level: int,
                  global_pool_level: bool) -> dict[str, tuple[int, int]]:
  """{level: (height, width)} of backbone + extra levels for an input size.

  Every stride-2 step ('same' padding, as Model Garden's ResNet and the
  extra units) rounds up; level l is l such steps from the input, the
  pooled level is 1x1.

  Args:
    image_size: [height, width] of the input.
    min_level: Finest level.
    max_level: Coarsest level.
    global_pool_level: `max_level` is the global average pool.

  Returns:
    {str(l): (H_l, W_l)} for l in [min_level, max_level].
  """
  sizes = {}
  height, width = int(image_size[0]), int(image_size[1])
  for level in range(1, max_level + 1):
    height, width = math.ceil(height / 2), math.ceil(width / 2)
    if level >= min_level:
      sizes[str(level)] = ((1, 1) if global_pool_level and level == max_level
                           else (height, width))
  return sizes


@tf_keras.utils.register_keras_serializable(package='tf_mtdet')
class SSDExtraLevels(tf_keras.Model):
  """[B, H, W, C] (the backbone's coarsest level) -> {level: features}.

  Output: {str(first_level + i): [B, ceil(H / 2^(i+1)), ..., 4 * filters]}
  for the `num_levels` unit levels, then with `global_pool_level` one more
  [B, 1, 1, 4 * filters] level.
  """

  def __init__(self,
               input_specs: tf.TensorShape,
               first_level: int,
               num_levels: int = 2,
               filters: int = 512,
               blocks: int = 2,
               global_pool_level: bool = True,
               activation: str = 'relu',
               use_sync_bn: bool = False,
               norm_momentum: float = 0.99,
               norm_epsilon: float = 0.001,
               kernel_initializer: str = 'VarianceScaling',
               kernel_regularizer: Optional[
                   tf_keras.regularizers.Regularizer] = None,
               **kwargs):
    """Initializes the extra levels.

    Args:
      input_specs: Shape [B, H, W, C] of the backbone level they start from.
      first_level: Level number of the first extra level.
      num_levels: Levels of bottleneck units (>= 1).
      filters: Bottleneck width (outputs 4 x filters).
      blocks: Bottleneck units per level (the first stride 2, projection).
      global_pool_level: Add one level: the global average of the last.
      activation: Activation.
      use_sync_bn: Synchronized batch norm.
      norm_momentum: Batch norm momentum.
      norm_epsilon: Batch norm epsilon.
      kernel_initializer: Conv kernel initializer.
      kernel_regularizer: Conv kernel regularizer.
      **kwargs: `tf_keras.Model` arguments.
    """
    if num_levels < 1 or blocks < 1:
      raise ValueError('extra_levels: num_levels and blocks must be >= 1, got '
                       f'{num_levels} and {blocks}')
    self._config_dict = dict(
        input_specs=input_specs, first_level=first_level,
        num_levels=num_levels, filters=filters, blocks=blocks,
        global_pool_level=global_pool_level, activation=activation,
        use_sync_bn=use_sync_bn, norm_momentum=norm_momentum,
        norm_epsilon=norm_epsilon, kernel_initializer=kernel_initializer,
        kernel_regularizer=kernel_regularizer)
    inputs = tf_keras.Input(shape=tf.TensorShape(input_specs)[1:],
                            name=f'level_{first_level - 1}')
    x = inputs
    endpoints = {}
    for i in range(num_levels):
      level = first_level + i
      for j in range(blocks):
        x = nn_blocks.BottleneckBlock(
            filters=filters, strides=2 if j == 0 else 1,
            use_projection=j == 0, activation=activation,
            use_sync_bn=use_sync_bn, norm_momentum=norm_momentum,
            norm_epsilon=norm_epsilon, kernel_initializer=kernel_initializer,
            kernel_regularizer=kernel_regularizer,
            name=f'extra_l{level}_unit{j}')(x)
      endpoints[str(level)] = x
    if global_pool_level:
      level = first_level + num_levels
      endpoints[str(level)] = tf_keras.layers.GlobalAveragePooling2D(
          keepdims=True, name=f'extra_l{level}_pool')(x)
    self._output_specs = {k: v.get_shape() for k, v in endpoints.items()}
    super().__init__(inputs=inputs, outputs=endpoints, **kwargs)

  @property
  def input_level(self) -> int:
    """The backbone level the extra levels start from."""
    return self._config_dict['first_level'] - 1

  @property
  def output_specs(self) -> Mapping[str, tf.TensorShape]:
    return self._output_specs

  def get_config(self) -> Mapping[str, Any]:
    config = dict(self._config_dict)
    config['input_specs'] = tf.TensorShape(config['input_specs']).as_list()
    config['kernel_regularizer'] = tf_keras.regularizers.serialize(
        config['kernel_regularizer']) if config['kernel_regularizer'] else None
    return config

  @classmethod
  def from_config(cls, config, custom_objects=None):
    config = dict(config)
    if config.get('kernel_regularizer'):
      config['kernel_regularizer'] = tf_keras.regularizers.deserialize(
          config['kernel_regularizer'])
    return cls(**config)


def num_levels(config) -> int:
  """Levels the config's extra-levels module adds (pool level included)."""
  extra = config.extra_levels
  if not extra.num_levels:
    return 0
  return extra.num_levels + int(extra.global_pool_level)


def build_ssd_extra_levels(
    backbone_specs: Mapping[str, tf.TensorShape], config,
    l2_regularizer: Optional[tf_keras.regularizers.Regularizer] = None
) -> Optional[SSDExtraLevels]:
  """The single-shot config's `extra_levels` on `backbone_specs`, or None.

  Args:
    backbone_specs: {level: shape} the backbone outputs.
    config: `SingleShotModel` config (`extra_levels`, `min_level`,
      `max_level`, `norm_activation`).
    l2_regularizer: Conv kernel regularizer.

  Raises:
    ValueError: the backbone lacks the levels below the extras, or
      min_level/max_level disagree with them.
  """
  added = num_levels(config)
  top = config.max_level - added
  missing = [str(l) for l in range(config.min_level, top + 1)
             if str(l) not in backbone_specs]
  if missing:
    raise ValueError(
        f'min_level/max_level {config.min_level}/{config.max_level} with '
        f'{added} extra levels need backbone levels {config.min_level}..{top}; '
        f'the {config.backbone.type!r} backbone has '
        f'{sorted(backbone_specs, key=int)}')
  if not added:
    return None
  extra = config.extra_levels
  norm = config.norm_activation
  return SSDExtraLevels(
      backbone_specs[str(top)], first_level=top + 1,
      num_levels=extra.num_levels, filters=extra.filters,
      blocks=extra.blocks, global_pool_level=extra.global_pool_level,
      activation=norm.activation, use_sync_bn=norm.use_sync_bn,
      norm_momentum=norm.norm_momentum, norm_epsilon=norm.norm_epsilon,
      kernel_regularizer=l2_regularizer, name='extra_levels')
