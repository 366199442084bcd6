"""ResNet/ResNeXt backbone (Xie et al., "Aggregated Residual Transformations
for Deep Neural Networks", CVPR 2017), registered in Model Garden's backbone
registry as 'resnext'.

The ResNet bottleneck with a grouped 3x3 conv: 1x1 (width) -> 3x3 (width,
`cardinality` groups) -> 1x1 (4 x base), width = cardinality x
width_per_group x 2^(stage - 2); stages of 3/4/23/3 blocks for ResNeXt-101
(32x8d: widths 256, 512, 1024, 2048; outputs 256, 512, 1024, 2048). A ResNet
is the same model with cardinality 1 and width_per_group 64. Endpoints
{'2'..'5'} as Model Garden's ResNet, so its FPN reads it.

The switches make converted ImageNet weights (`tf-mtdet convert-weights`)
compute what they computed in their own framework:

* `stride_in_1x1`: the block's stride in its first 1x1 conv (MSRA's caffe2
  ResNets) instead of the 3x3 (torchvision, FAIR's ResNeXt, ResNet v1.5).
* `padding='symmetric'`: stride-2 convs and the stem max-pool pad (k - 1) / 2
  on every side, as PyTorch and caffe2 do; TensorFlow's 'same' pads the extra
  row and column at the bottom/right only, which shifts every stride-2 output
  by half a pixel on even sizes.
* `frozen_bn`: every BatchNormalization is a fixed per-channel scale and bias
  (`FrozenBatchNormalization`: inference statistics, no trainable variable),
  as maskrcnn-benchmark's FrozenBatchNorm2d.
* `freeze_at`: the stem (1) and the stages up to res`freeze_at` take no
  gradient (maskrcnn-benchmark's FREEZE_CONV_BODY_AT).

Padding happens inside the stem and block layers, so every switch setting
has the same variables and checkpoint layout.
"""

from typing import Any, Mapping, Optional

import tensorflow as tf
import tf_keras

from official.modeling import hyperparams
from official.modeling import tf_utils
from official.vision.modeling.backbones import factory

from tf_mtdet.modeling import layer_config

# Blocks per stage. 14 and 26 are the small bottleneck ResNets of Model
# Garden's table (tests and tiny configs).
DEPTHS = {14: [1, 1, 1, 1], 26: [2, 2, 2, 2], 50: [3, 4, 6, 3],
          101: [3, 4, 23, 3], 152: [3, 8, 36, 3]}
PADDINGS = ('same', 'symmetric')


@tf_keras.utils.register_keras_serializable(package='tf_mtdet')
class FrozenBatchNormalization(tf_keras.layers.BatchNormalization):
  """BatchNormalization as a fixed per-channel scale and bias: [..., C] ->
  [..., C], always with the moving statistics, never trainable."""

  def __init__(self, **kwargs):
    kwargs.pop('trainable', None)
    kwargs.pop('synchronized', None)  # nothing to synchronise
    super().__init__(trainable=False, **kwargs)

  def call(self, inputs, training=None):
    del training
    return super().call(inputs, training=False)


def batch_norm(name: str, frozen: bool, use_sync_bn: bool,
               norm_momentum: float, norm_epsilon: float
               ) -> tf_keras.layers.BatchNormalization:
  """A trainable (optionally synchronised) or a frozen BatchNormalization."""
  if frozen:
    return FrozenBatchNormalization(momentum=norm_momentum,
                                    epsilon=norm_epsilon, name=name)
  return tf_keras.layers.BatchNormalization(
      momentum=norm_momentum, epsilon=norm_epsilon, synchronized=use_sync_bn,
      name=name)


def _symmetric_pad(x: tf.Tensor, size: int, strides: int, padding: str,
                   value: float = 0.0) -> tf.Tensor:
  """Pads (size - 1) / 2 on every side where PyTorch would and 'same'
  differs from it (strided windows)."""
  if padding != 'symmetric' or strides == 1 or size == 1:
    return x
  pad = (size - 1) // 2
  return tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]],
                constant_values=value)


def _check_padding(padding: str) -> None:
  if padding not in PADDINGS:
    raise ValueError(f'padding must be one of {PADDINGS}, got {padding!r}')


def _conv(filters: int, size: int, strides: int, padding: str, name: str,
          groups: int = 1, kernel_regularizer=None) -> tf_keras.layers.Conv2D:
  explicit = padding == 'symmetric' and strides > 1 and size > 1
  return tf_keras.layers.Conv2D(
      filters, size, strides=strides, padding='valid' if explicit else 'same',
      groups=groups, use_bias=False, kernel_initializer='VarianceScaling',
      kernel_regularizer=kernel_regularizer, name=name)


@tf_keras.utils.register_keras_serializable(package='tf_mtdet')
class ResNeXtStem(tf_keras.layers.Layer):
  """7x7 stride-2 conv, BN, activation, 3x3 stride-2 max-pool:
  [B, H, W, 3] -> [B, H/4, W/4, filters]."""

  def __init__(self, filters: int = 64, padding: str = 'same',
               frozen_bn: bool = False, use_sync_bn: bool = False,
               norm_momentum: float = 0.99, norm_epsilon: float = 0.001,
               activation: str = 'relu',
               kernel_regularizer: Optional[
                   tf_keras.regularizers.Regularizer] = None, **kwargs):
    super().__init__(**kwargs)
    _check_padding(padding)
    self._config_dict = dict(
        filters=filters, padding=padding, frozen_bn=frozen_bn,
        use_sync_bn=use_sync_bn, norm_momentum=norm_momentum,
        norm_epsilon=norm_epsilon, activation=activation,
        kernel_regularizer=kernel_regularizer)
    self._conv = _conv(filters, 7, 2, padding, 'stem_conv',
                       kernel_regularizer=kernel_regularizer)
    self._norm = batch_norm('stem_bn', frozen_bn, use_sync_bn, norm_momentum,
                            norm_epsilon)
    self._activation = tf_utils.get_activation(activation)
    self._pool = tf_keras.layers.MaxPool2D(
        3, strides=2, padding='valid' if padding == 'symmetric' else 'same')

  def call(self, images: tf.Tensor, training=None) -> tf.Tensor:
    padding = self._config_dict['padding']
    x = self._conv(_symmetric_pad(images, 7, 2, padding))
    x = self._activation(self._norm(x, training=training))
    # PyTorch pads the max-pool with -inf.
    return self._pool(_symmetric_pad(x, 3, 2, padding, value=float('-inf')))

  def get_config(self) -> Mapping[str, Any]:
    return {**super().get_config(),
            **layer_config.serialize_regularizer(self._config_dict)}

  @classmethod
  def from_config(cls, config, custom_objects=None):
    return cls(**layer_config.deserialize_regularizer(config))


@tf_keras.utils.register_keras_serializable(package='tf_mtdet')
class ResNeXtBlock(tf_keras.layers.Layer):
  """One ResNeXt bottleneck: [B, H, W, C] -> [B, H/s, W/s, out_filters]."""

  def __init__(self, width: int, out_filters: int, cardinality: int,
               strides: int = 1, use_projection: bool = False,
               stride_in_1x1: bool = False, padding: str = 'same',
               frozen_bn: bool = False,
               use_sync_bn: bool = False, norm_momentum: float = 0.99,
               norm_epsilon: float = 0.001, activation: str = 'relu',
               kernel_regularizer: Optional[
                   tf_keras.regularizers.Regularizer] = None, **kwargs):
    super().__init__(**kwargs)
    _check_padding(padding)
    self._config_dict = dict(
        width=width, out_filters=out_filters, cardinality=cardinality,
        strides=strides, use_projection=use_projection,
        stride_in_1x1=stride_in_1x1, padding=padding, frozen_bn=frozen_bn,
        use_sync_bn=use_sync_bn, norm_momentum=norm_momentum,
        norm_epsilon=norm_epsilon, activation=activation,
        kernel_regularizer=kernel_regularizer)
    conv = lambda filters, size, name, strides=1, groups=1: _conv(
        filters, size, strides, padding, name, groups=groups,
        kernel_regularizer=kernel_regularizer)
    norm = lambda name: batch_norm(name, frozen_bn, use_sync_bn,
                                   norm_momentum, norm_epsilon)
    self._activation = tf_utils.get_activation(activation)
    self._strides_1x1 = strides if stride_in_1x1 else 1
    self._strides_3x3 = 1 if stride_in_1x1 else strides
    self._conv1 = conv(width, 1, 'conv1', strides=self._strides_1x1)
    self._norm1 = norm('bn1')
    self._conv2 = conv(width, 3, 'conv2', strides=self._strides_3x3,
                       groups=cardinality)
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
    x = _symmetric_pad(x, 3, self._strides_3x3, self._config_dict['padding'])
    x = self._activation(self._norm2(self._conv2(x), training=training))
    x = self._norm3(self._conv3(x), training=training)
    return self._activation(x + shortcut)

  def get_config(self) -> Mapping[str, Any]:
    return {**super().get_config(),
            **layer_config.serialize_regularizer(self._config_dict)}

  @classmethod
  def from_config(cls, config, custom_objects=None):
    return cls(**layer_config.deserialize_regularizer(config))


def stage_width(stage: int, cardinality: int, width_per_group: int,
                depth_multiplier: float = 1.0) -> int:
  """Width of the grouped 3x3 convs of stage `stage` (2..5)."""
  width = int(cardinality * width_per_group * 2**(stage - 2) *
              depth_multiplier)
  # Each group needs a whole number of channels.
  return max(cardinality, width // cardinality * cardinality)


@tf_keras.utils.register_keras_serializable(package='tf_mtdet')
class ResNeXt(tf_keras.Model):
  """Images [B, H, W, 3] -> {'2': [B, H/4, W/4, 256 m], ..., '5': [B, H/32,
  W/32, 2048 m]} (m = depth_multiplier)."""

  def __init__(self, model_id: int = 101, cardinality: int = 32,
               width_per_group: int = 8, depth_multiplier: float = 1.0,
               stride_in_1x1: bool = False, padding: str = 'same',
               frozen_bn: bool = False, freeze_at: int = 0,
               input_specs: Optional[tf_keras.layers.InputSpec] = None,
               use_sync_bn: bool = False, norm_momentum: float = 0.99,
               norm_epsilon: float = 0.001, activation: str = 'relu',
               kernel_regularizer: Optional[
                   tf_keras.regularizers.Regularizer] = None, **kwargs):
    if model_id not in DEPTHS:
      raise ValueError(f'ResNeXt model_id must be one of {sorted(DEPTHS)}, '
                       f'got {model_id}')
    _check_padding(padding)
    if not 0 <= freeze_at <= 5:
      raise ValueError(f'freeze_at must be 0 (nothing), 1 (the stem) or 2-5 '
                       f'(the stem and res2..res<freeze_at>), got {freeze_at}')
    self._config_dict = dict(
        model_id=model_id, cardinality=cardinality,
        width_per_group=width_per_group, depth_multiplier=depth_multiplier,
        stride_in_1x1=stride_in_1x1, padding=padding, frozen_bn=frozen_bn,
        freeze_at=freeze_at, use_sync_bn=use_sync_bn,
        norm_momentum=norm_momentum, norm_epsilon=norm_epsilon,
        activation=activation, kernel_regularizer=kernel_regularizer)
    common = dict(padding=padding, frozen_bn=frozen_bn,
                  use_sync_bn=use_sync_bn, norm_momentum=norm_momentum,
                  norm_epsilon=norm_epsilon, activation=activation,
                  kernel_regularizer=kernel_regularizer)
    if input_specs is None:
      input_specs = tf_keras.layers.InputSpec(shape=[None, None, None, 3])
    inputs = tf_keras.Input(shape=input_specs.shape[1:])
    x = ResNeXtStem(int(64 * depth_multiplier), name='stem',
                    trainable=freeze_at < 1, **common)(inputs)
    endpoints = {}
    for stage, repeats in zip(range(2, 6), DEPTHS[model_id]):
      width = stage_width(stage, cardinality, width_per_group,
                          depth_multiplier)
      out_filters = int(256 * 2**(stage - 2) * depth_multiplier)
      for i in range(repeats):
        x = ResNeXtBlock(
            width, out_filters, cardinality,
            strides=2 if i == 0 and stage > 2 else 1, use_projection=i == 0,
            stride_in_1x1=stride_in_1x1, trainable=stage > freeze_at,
            name=f'stage{stage}_block{i}', **common)(x)
      endpoints[str(stage)] = x
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
      depth_multiplier=cfg.depth_multiplier,
      stride_in_1x1=cfg.stride_in_1x1, padding=cfg.padding,
      frozen_bn=cfg.frozen_bn, freeze_at=cfg.freeze_at,
      input_specs=input_specs,
      use_sync_bn=norm.use_sync_bn, norm_momentum=norm.norm_momentum,
      norm_epsilon=norm.norm_epsilon, activation=norm.activation,
      kernel_regularizer=l2_regularizer)
