"""ResNet SSD trunk (BlitzNet's shape, IvaNet's trunk).

Model Garden's ResNet cut after conv4_x: levels '3' (conv3_x, stride 8) and
'4' (conv4_x, stride 16), then SSD extra levels, each `extra_blocks`
bottleneck units of which the first has stride 2; the last extra level is a
global average pool. With 'same' padding (sizes round up) a 300x300 input
gives 38/19/10/5/3/1 and 512x512 gives 64/32/16/8/4/2/1.
"""

import math
from typing import Any, Mapping, Optional, Sequence

import tensorflow as tf
import tf_keras

from official.modeling import hyperparams
from official.vision.modeling.backbones import factory as backbone_factory
from official.vision.modeling.backbones import resnet
from official.vision.modeling.layers import nn_blocks


def feature_sizes(image_size: Sequence[int], num_extra_levels: int,
                  global_pool_last: bool = True) -> list[tuple[int, int]]:
  """The trunk's (height, width) per level, finest first.

  Args:
    image_size: [height, width] of the input.
    num_extra_levels: Levels after conv4_x.
    global_pool_last: The last extra level is 1x1.

  Returns:
    2 + num_extra_levels sizes: strides 8 and 16 (rounded up, as 'same'
    padding does at each stride-2 layer), then halving (rounded up).
  """
  sizes = []
  height, width = int(image_size[0]), int(image_size[1])
  for _ in range(4):  # stem conv, max pool, conv3_x, conv4_x
    height, width = math.ceil(height / 2), math.ceil(width / 2)
    if _ >= 2:
      sizes.append((height, width))
  for i in range(num_extra_levels):
    if global_pool_last and i == num_extra_levels - 1:
      sizes.append((1, 1))
    else:
      height, width = math.ceil(height / 2), math.ceil(width / 2)
      sizes.append((height, width))
  return sizes


@tf_keras.utils.register_keras_serializable(package='tf_mtdet')
class SSDResNet(tf_keras.Model):
  """ResNet to conv4_x plus SSD extra levels.

  Output: {'3': [B, H/8, W/8, 4 * 128 * m], '4': [B, H/16, W/16,
  4 * 256 * m], '5'..: [B, h, w, 4 * extra_filters]} (m the depth
  multiplier, bottleneck ResNets).
  """

  def __init__(self,
               model_id: int = 50,
               input_specs: tf_keras.layers.InputSpec = tf_keras.layers.InputSpec(
                   shape=[None, None, None, 3]),
               depth_multiplier: float = 1.0,
               num_extra_levels: int = 4,
               extra_filters: int = 128,
               extra_blocks: int = 2,
               global_pool_last: bool = True,
               activation: str = 'relu',
               use_sync_bn: bool = False,
               norm_momentum: float = 0.99,
               norm_epsilon: float = 0.001,
               kernel_initializer: str = 'VarianceScaling',
               kernel_regularizer: Optional[
                   tf_keras.regularizers.Regularizer] = None,
               **kwargs):
    """Initializes the trunk.

    Args:
      model_id: ResNet depth.
      input_specs: Input spec [B, H, W, 3].
      depth_multiplier: Width multiplier of the ResNet part.
      num_extra_levels: SSD levels after conv4_x.
      extra_filters: Bottleneck width of the extra levels.
      extra_blocks: Bottleneck units per extra level (first one stride 2).
      global_pool_last: The last extra level is a global average pool.
      activation: Activation.
      use_sync_bn: Synchronized batch norm.
      norm_momentum: Batch norm momentum.
      norm_epsilon: Batch norm epsilon.
      kernel_initializer: Conv kernel initializer.
      kernel_regularizer: Conv kernel regularizer.
      **kwargs: `tf_keras.Model` arguments.
    """
    if num_extra_levels < 1:
      raise ValueError(f'num_extra_levels must be >= 1, got {num_extra_levels}')
    self._config_dict = dict(
        model_id=model_id, input_specs=input_specs,
        depth_multiplier=depth_multiplier, num_extra_levels=num_extra_levels,
        extra_filters=extra_filters, extra_blocks=extra_blocks,
        global_pool_last=global_pool_last, activation=activation,
        use_sync_bn=use_sync_bn, norm_momentum=norm_momentum,
        norm_epsilon=norm_epsilon, kernel_initializer=kernel_initializer,
        kernel_regularizer=kernel_regularizer)
    full = resnet.ResNet(
        model_id=model_id, input_specs=input_specs,
        depth_multiplier=depth_multiplier, activation=activation,
        use_sync_bn=use_sync_bn, norm_momentum=norm_momentum,
        norm_epsilon=norm_epsilon, kernel_initializer=kernel_initializer,
        kernel_regularizer=kernel_regularizer)
    # Cut after conv4_x: one functional graph from the ResNet's input through
    # its conv4_x output, so conv5_x is neither part of it nor trained.
    inputs = full.inputs
    c3 = full.get_layer('block_group_l3').output
    c4 = full.get_layer('block_group_l4').output
    endpoints = {'3': c3, '4': c4}
    x = c4
    for i in range(num_extra_levels):
      level = 5 + i
      for j in range(extra_blocks):
        x = nn_blocks.BottleneckBlock(
            filters=extra_filters, strides=2 if j == 0 else 1,
            use_projection=j == 0, activation=activation,
            use_sync_bn=use_sync_bn, norm_momentum=norm_momentum,
            norm_epsilon=norm_epsilon, kernel_initializer=kernel_initializer,
            kernel_regularizer=kernel_regularizer,
            name=f'extra_l{level}_unit{j}')(x)
      if global_pool_last and i == num_extra_levels - 1:
        x = tf_keras.layers.GlobalAveragePooling2D(
            keepdims=True, name=f'extra_l{level}_pool')(x)
      endpoints[str(level)] = x
    self._output_specs = {k: v.get_shape() for k, v in endpoints.items()}
    super().__init__(inputs=inputs, outputs=endpoints, **kwargs)

  @property
  def output_specs(self) -> Mapping[str, tf.TensorShape]:
    return self._output_specs

  def get_config(self) -> Mapping[str, Any]:
    return dict(self._config_dict)

  @classmethod
  def from_config(cls, config, custom_objects=None):
    return cls(**config)


@backbone_factory.register_backbone_builder('ssd_resnet')
def build_ssd_resnet(input_specs: tf_keras.layers.InputSpec,
                     backbone_config: hyperparams.Config,
                     norm_activation_config: hyperparams.Config,
                     l2_regularizer: Optional[
                         tf_keras.regularizers.Regularizer] = None
                     ) -> SSDResNet:
  """The trunk from `backbone.ssd_resnet` and `norm_activation`."""
  cfg = backbone_config.get()
  return SSDResNet(
      model_id=cfg.model_id, input_specs=input_specs,
      depth_multiplier=cfg.depth_multiplier,
      num_extra_levels=cfg.num_extra_levels, extra_filters=cfg.extra_filters,
      extra_blocks=cfg.extra_blocks, global_pool_last=cfg.global_pool_last,
      activation=norm_activation_config.activation,
      use_sync_bn=norm_activation_config.use_sync_bn,
      norm_momentum=norm_activation_config.norm_momentum,
      norm_epsilon=norm_activation_config.norm_epsilon,
      kernel_regularizer=l2_regularizer)
