"""ResNeXt backbone (Xie et al., "Aggregated Residual Transformations for
Deep Neural Networks", CVPR 2017), registered in Model Garden's backbone
registry as 'resnext'.

The ResNet bottleneck with a grouped 3x3 conv: 1x1 (width) -> 3x3 (width,
`cardinality` groups, the block's stride) -> 1x1 (4 x base), width =
cardinality x width_per_group x 2^(stage - 2); stages of 3/4/23/3 blocks for
ResNeXt-101 (32x8d: widths 256, 512, 1024, 2048; outputs 256, 512, 1024,
2048). Endpoints {'2'..'5'} as Model Garden's ResNet, so its FPN reads it.
Pretrained weights come in through `--init-checkpoint` (a checkpoint of this
model's variables).
"""

from typing import Any, Mapping, Optional

import tensorflow as tf
import tf_keras

from official.modeling import hyperparams
from official.modeling import tf_utils
from official.vision.modeling.backbones import factory

DEPTHS = {50: [3, 4, 6, 3], 101: [3, 4, 23, 3], 152: [3, 8, 36, 3]}


@tf_keras.utils.register_keras_serializable(package='tf_mtdet')
class ResNeXtBlock(tf_keras.layers.Layer):
  """One ResNeXt bottleneck: [B, H, W, C] -> [B, H/s, W/s, out_filters]."""

  def __init__(self, width: int, out_filters: int, cardinality: int,
               strides: int = 1, use_projection: bool = False,
               use_sync_bn: bool = False, norm_momentum: float = 0.99,
               norm_epsilon: float = 0.001, activation: str = 'relu',
               kernel_regularizer: Optional[
                   tf_keras.regularizers.Regularizer] = None, **kwargs):
    super().__init__(**kwargs)
    self._config_dict = dict(
        width=width, out_filters=out_filters, cardinality=cardinality,
        strides=strides, use_projection=use_projection,
        use_sync_bn=use_sync_bn, norm_momentum=norm_momentum,
        norm_epsilon=norm_epsilon, activation=activation,
        kernel_regularizer=kernel_regularizer)
    conv = lambda filters, size, name, strides=1, groups=1: (
        tf_keras.layers.Conv2D(
            filters, size, strides=strides, padding='same', groups=groups,
            use_bias=False, kernel_initializer='VarianceScaling',
            kernel_regularizer=kernel_regularizer, name=name))
    norm = lambda name: tf_keras.layers.BatchNormalization(
        momentum=norm_momentum, epsilon=norm_epsilon,
        synchronized=use_sync_bn, name=name)
    self._activation = tf_utils.get_activation(activation)
    self._conv1, self._norm1 = conv(width, 1, 'conv1'), norm('bn1')
    # The stride sits in the grouped 3x3 conv, as in the ResNeXt paper.
    self._conv2 = conv(width, 3, 'conv2', strides=strides, groups=cardinality)
    self._norm2 = norm('bn2')
    self._conv3, self._norm3 = conv(out_filters, 1, 'conv3'), norm('bn3')
    self._shortcut = (conv(out_filters, 1, 'shortcut', strides=strides)
                      if use_projection else None)
    self._shortcut_norm = norm('shortcut_bn') if use_projection else None

  def call(self, x: tf.Tensor, training=None) -> tf.Tensor:
    shortcut = x
    if self._shortcut is not None:
      shortcut = self._shortcut_norm(self._shortcut(x), training=training)
    x = self._activation(self._norm1(self._conv1(x), training=training))
    x = self._activation(self._norm2(self._conv2(x), training=training))
    x = self._norm3(self._conv3(x), training=training)
    return self._activation(x + shortcut)

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


@tf_keras.utils.register_keras_serializable(package='tf_mtdet')
class ResNeXt(tf_keras.Model):
  """Images [B, H, W, 3] -> {'2': [B, H/4, W/4, 256 m], ..., '5': [B, H/32,
  W/32, 2048 m]} (m = depth_multiplier)."""

  def __init__(self, model_id: int = 101, cardinality: int = 32,
               width_per_group: int = 8, depth_multiplier: float = 1.0,
               input_specs: Optional[tf_keras.layers.InputSpec] = None,
               use_sync_bn: bool = False, norm_momentum: float = 0.99,
               norm_epsilon: float = 0.001, activation: str = 'relu',
               kernel_regularizer: Optional[
                   tf_keras.regularizers.Regularizer] = None, **kwargs):
    if model_id not in DEPTHS:
      raise ValueError(f'ResNeXt model_id must be one of {sorted(DEPTHS)}, '
                       f'got {model_id}')
    self._config_dict = dict(
        model_id=model_id, cardinality=cardinality,
        width_per_group=width_per_group, depth_multiplier=depth_multiplier,
        use_sync_bn=use_sync_bn, norm_momentum=norm_momentum,
        norm_epsilon=norm_epsilon, activation=activation,
        kernel_regularizer=kernel_regularizer)
    norm_args = dict(use_sync_bn=use_sync_bn, norm_momentum=norm_momentum,
                     norm_epsilon=norm_epsilon, activation=activation,
                     kernel_regularizer=kernel_regularizer)
    if input_specs is None:
      input_specs = tf_keras.layers.InputSpec(shape=[None, None, None, 3])
    inputs = tf_keras.Input(shape=input_specs.shape[1:])
    x = tf_keras.layers.Conv2D(
        int(64 * depth_multiplier), 7, strides=2, padding='same',
        use_bias=False, kernel_initializer='VarianceScaling',
        kernel_regularizer=kernel_regularizer, name='stem_conv')(inputs)
    x = tf_keras.layers.BatchNormalization(
        momentum=norm_momentum, epsilon=norm_epsilon,
        synchronized=use_sync_bn, name='stem_bn')(x)
    x = tf_utils.get_activation(activation, use_keras_layer=True)(x)
    x = tf_keras.layers.MaxPool2D(3, strides=2, padding='same')(x)
    endpoints = {}
    for stage, repeats in enumerate(DEPTHS[model_id]):
      width = int(cardinality * width_per_group * 2**stage * depth_multiplier)
      # Each group needs a whole number of channels.
      width = max(cardinality, width // cardinality * cardinality)
      out_filters = int(256 * 2**stage * depth_multiplier)
      for i in range(repeats):
        x = ResNeXtBlock(
            width, out_filters, cardinality,
            strides=2 if i == 0 and stage > 0 else 1, use_projection=i == 0,
            name=f'stage{stage + 2}_block{i}', **norm_args)(x)
      endpoints[str(stage + 2)] = x
    self._output_specs = {l: endpoints[l].get_shape() for l in endpoints}
    super().__init__(inputs=inputs, outputs=endpoints, **kwargs)

  @property
  def output_specs(self):
    """{level: TensorShape} of the endpoints."""
    return self._output_specs

  def get_config(self) -> Mapping[str, Any]:
    return dict(self._config_dict)

  @classmethod
  def from_config(cls, config, custom_objects=None):
    return cls(**config)


@factory.register_backbone_builder('resnext')
def build_resnext(input_specs: tf_keras.layers.InputSpec,
                  backbone_config: hyperparams.Config,
                  norm_activation_config: hyperparams.Config,
                  l2_regularizer: Optional[
                      tf_keras.regularizers.Regularizer] = None
                  ) -> tf_keras.Model:
  """Model Garden backbone builder for `backbone.type: resnext`."""
  cfg = backbone_config.get()
  norm = norm_activation_config
  return ResNeXt(
      model_id=cfg.model_id, cardinality=cfg.cardinality,
      width_per_group=cfg.width_per_group,
      depth_multiplier=cfg.depth_multiplier, input_specs=input_specs,
      use_sync_bn=norm.use_sync_bn, norm_momentum=norm.norm_momentum,
      norm_epsilon=norm.norm_epsilon, activation=norm.activation,
      kernel_regularizer=l2_regularizer)
