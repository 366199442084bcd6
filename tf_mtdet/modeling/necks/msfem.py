"""CoMask's MFPN (Chen et al.): Model Garden's FPN, then one MSFEM per level.

MSFEM (multi-scale feature extraction module, paper Sec. 3.1, Eqns. 1-7) with
the public code's wiring (design notes Sec. 4): for `branches` = 4,

  b3 = up(3 x [conv3x3 s2, GN, ReLU](x))
  b2 = up(2 x [conv3x3 s2, GN, ReLU](concat[b3, x]))
  b1 = up(1 x [conv3x3 s2, GN, ReLU](concat[b2, x]))
  f  = conv1x1(concat[x, b3, b2, b1]) -> num_filters          (Eqns. 2-3)
  y  = f * sigmoid(FC(ReLU(FC(GAP(f)))))   (channel attention, Eqns. 4-6)
  out = ReLU(y + GN(conv3x3(y)))                              (Eqn. 7)

where `up` resizes bilinearly back to x's size (odd sizes included). Fewer
branches drop the deepest ones: 2 branches keep x and b1 = up(conv s2(x)),
1 branch keeps x alone (1x1 conv, attention and the 3x3 conv remain). Each
pyramid level (P2..P6 of the FPN) gets its own MSFEM. Same output contract as
Model Garden's FPN.
"""

from typing import Any, Mapping, Optional

import tensorflow as tf
import tf_keras

from official.modeling import hyperparams
from official.vision.modeling.decoders import factory as decoder_factory
from official.vision.modeling.decoders import fpn

BRANCHES = (1, 2, 4)


def _groups(channels: int, groups: int = 32) -> int:
  """GN groups: 32 as in the public code, fewer for narrow (tiny) models."""
  groups = min(groups, channels)
  while channels % groups:
    groups -= 1
  return groups


def _serialize(regularizer):
  return (tf_keras.regularizers.serialize(regularizer) if regularizer
          else None)


def _deserialize(config):
  config = dict(config)
  if config.get('kernel_regularizer'):
    config['kernel_regularizer'] = tf_keras.regularizers.deserialize(
        config['kernel_regularizer'])
  return config


@tf_keras.utils.register_keras_serializable(package='tf_mtdet')
class ChannelAttention(tf_keras.layers.Layer):
  """Squeeze-and-excitation: x [B, H, W, C] -> x * sigmoid(FC2(ReLU(FC1(
  GAP(x))))) with FC1: C -> C / reduction, FC2: C / reduction -> C."""

  def __init__(self, reduction: int = 4,
               kernel_regularizer: Optional[
                   tf_keras.regularizers.Regularizer] = None, **kwargs):
    super().__init__(**kwargs)
    self._config_dict = dict(reduction=reduction,
                             kernel_regularizer=kernel_regularizer)

  def build(self, input_shape):
    channels = int(input_shape[-1])
    reduction = self._config_dict['reduction']
    if channels % reduction:
      raise ValueError(f'channel attention: {channels} channels are not '
                       f'divisible by reduction {reduction}')
    regularizer = self._config_dict['kernel_regularizer']
    self.squeeze = tf_keras.layers.Dense(
        channels // reduction, activation='relu', name='squeeze',
        kernel_regularizer=regularizer)
    self.excite = tf_keras.layers.Dense(
        channels, activation='sigmoid', name='excite',
        kernel_regularizer=regularizer)
    self.squeeze.build([None, channels])
    self.excite.build([None, channels // reduction])
    super().build(input_shape)

  def call(self, x: tf.Tensor) -> tf.Tensor:
    scale = self.excite(self.squeeze(tf.reduce_mean(x, axis=[1, 2])))
    return x * scale[:, tf.newaxis, tf.newaxis, :]

  def get_config(self) -> Mapping[str, Any]:
    config = dict(self._config_dict)
    config['kernel_regularizer'] = _serialize(config['kernel_regularizer'])
    return {**super().get_config(), **config}

  @classmethod
  def from_config(cls, config, custom_objects=None):
    return cls(**_deserialize(config))


@tf_keras.utils.register_keras_serializable(package='tf_mtdet')
class MSFEM(tf_keras.layers.Layer):
  """One MSFEM: x [B, H, W, C] -> [B, H, W, num_filters] (any H, W)."""

  def __init__(self, num_filters: int = 256, branches: int = 4,
               reduction: int = 4,
               kernel_regularizer: Optional[
                   tf_keras.regularizers.Regularizer] = None, **kwargs):
    """Initializes the module.

    Args:
      num_filters: Output channels (and the width of every branch conv).
      branches: 1, 2 or 4 (paper Table 2's CoMask_1, _2, _4).
      reduction: Channel attention's FC reduction.
      kernel_regularizer: Conv/FC kernel regularizer.
      **kwargs: Layer arguments.
    """
    super().__init__(**kwargs)
    if branches not in BRANCHES:
      raise ValueError(f'MSFEM branches must be one of {BRANCHES}, '
                       f'got {branches}')
    self._config_dict = dict(num_filters=num_filters, branches=branches,
                             reduction=reduction,
                             kernel_regularizer=kernel_regularizer)
    groups = _groups(num_filters)

    def conv_gn_relu(name):
      return tf_keras.Sequential([
          tf_keras.layers.Conv2D(num_filters, 3, strides=2, padding='same',
                                 use_bias=False,
                                 kernel_regularizer=kernel_regularizer),
          tf_keras.layers.GroupNormalization(groups),
          tf_keras.layers.ReLU()], name=name)

    # Branch depth d (d = branches - 1 .. 1): d stride-2 convs, the deepest
    # on x, each shallower one on concat[previous branch, x].
    self.branch_convs = [
        [conv_gn_relu(f'branch{depth}_conv{i}') for i in range(depth)]
        for depth in range(branches - 1, 0, -1)]
    self.fuse = tf_keras.layers.Conv2D(
        num_filters, 1, name='fuse', kernel_regularizer=kernel_regularizer)
    self.attention = ChannelAttention(reduction, kernel_regularizer,
                                      name='attention')
    self.out_conv = tf_keras.layers.Conv2D(
        num_filters, 3, padding='same', use_bias=False, name='out_conv',
        kernel_regularizer=kernel_regularizer)
    self.out_norm = tf_keras.layers.GroupNormalization(groups, name='out_gn')

  def branch_outputs(self, x: tf.Tensor) -> list[tf.Tensor]:
    """[x, b_{n-1}, ..., b_1], each [B, H, W, *] at x's size."""
    size = tf.shape(x)[1:3]
    outputs, previous = [x], None
    for convs in self.branch_convs:
      y = x if previous is None else tf.concat([previous, x], axis=-1)
      for conv in convs:
        y = conv(y)
      previous = tf.image.resize(y, size, method='bilinear')
      outputs.append(previous)
    return outputs

  def call(self, x: tf.Tensor) -> tf.Tensor:
    branches = self.branch_outputs(x)
    fused = self.fuse(tf.concat(branches, axis=-1) if len(branches) > 1
                      else x)
    y = self.attention(fused)
    return tf.nn.relu(y + self.out_norm(self.out_conv(y)))

  def get_config(self) -> Mapping[str, Any]:
    config = dict(self._config_dict)
    config['kernel_regularizer'] = _serialize(config['kernel_regularizer'])
    return {**super().get_config(), **config}

  @classmethod
  def from_config(cls, config, custom_objects=None):
    return cls(**_deserialize(config))


@tf_keras.utils.register_keras_serializable(package='tf_mtdet')
class MSFEMFPN(tf_keras.Model):
  """MFPN: Model Garden's FPN with an MSFEM on each output level."""

  def __init__(self,
               input_specs: Mapping[str, tf.TensorShape],
               min_level: int = 2,
               max_level: int = 6,
               num_filters: int = 256,
               branches: int = 4,
               reduction: int = 4,
               activation: str = 'relu',
               use_sync_bn: bool = False,
               norm_momentum: float = 0.99,
               norm_epsilon: float = 0.001,
               kernel_initializer: str = 'VarianceScaling',
               kernel_regularizer: Optional[
                   tf_keras.regularizers.Regularizer] = None,
               **kwargs):
    """Initializes MFPN.

    Args:
      input_specs: {level: TensorShape [B, H, W, C]} of the backbone.
      min_level: Lowest output level.
      max_level: Highest output level.
      num_filters: Channels of every output level.
      branches: MSFEM branches (1, 2 or 4).
      reduction: MSFEM channel attention reduction.
      activation: FPN activation.
      use_sync_bn: FPN synchronized batch norm.
      norm_momentum: FPN batch norm momentum.
      norm_epsilon: FPN batch norm epsilon.
      kernel_initializer: FPN conv kernel initializer.
      kernel_regularizer: Conv kernel regularizer.
      **kwargs: `tf_keras.Model` arguments.
    """
    self._config_dict = {
        'input_specs': input_specs, 'min_level': min_level,
        'max_level': max_level, 'num_filters': num_filters,
        'branches': branches, 'reduction': reduction,
        'activation': activation, 'use_sync_bn': use_sync_bn,
        'norm_momentum': norm_momentum, 'norm_epsilon': norm_epsilon,
        'kernel_initializer': kernel_initializer,
        'kernel_regularizer': kernel_regularizer,
    }
    inputs = {k: tf_keras.Input(shape=v[1:], name=f'level_{k}')
              for k, v in input_specs.items()}
    top_down = fpn.FPN(
        input_specs, min_level=min_level, max_level=max_level,
        num_filters=num_filters, activation=activation,
        use_sync_bn=use_sync_bn, norm_momentum=norm_momentum,
        norm_epsilon=norm_epsilon, kernel_initializer=kernel_initializer,
        kernel_regularizer=kernel_regularizer, name='fpn')
    pyramid = top_down(inputs)
    modules = {str(l): MSFEM(num_filters, branches, reduction,
                             kernel_regularizer, name=f'msfem_{l}')
               for l in range(min_level, max_level + 1)}
    outputs = {k: modules[k](pyramid[k]) for k in modules}
    super().__init__(inputs=inputs, outputs=outputs, **kwargs)
    self.fpn, self.msfems = top_down, modules
    self._output_specs = {k: v.get_shape() for k, v in outputs.items()}

  @property
  def output_specs(self) -> Mapping[str, tf.TensorShape]:
    return self._output_specs

  def get_config(self) -> Mapping[str, Any]:
    return dict(self._config_dict)

  @classmethod
  def from_config(cls, config, custom_objects=None):
    return cls(**config)


@decoder_factory.register_decoder_builder('msfem_fpn')
def build_msfem_fpn(input_specs: Mapping[str, tf.TensorShape],
                    model_config: hyperparams.Config,
                    l2_regularizer: Optional[
                        tf_keras.regularizers.Regularizer] = None
                    ) -> MSFEMFPN:
  """CoMask's MFPN from `model.decoder.msfem_fpn`."""
  cfg = model_config.decoder.msfem_fpn
  norm = model_config.norm_activation
  return MSFEMFPN(
      input_specs, min_level=model_config.min_level,
      max_level=model_config.max_level, num_filters=cfg.num_filters,
      branches=cfg.branches, reduction=cfg.reduction,
      activation=norm.activation, use_sync_bn=norm.use_sync_bn,
      norm_momentum=norm.norm_momentum, norm_epsilon=norm.norm_epsilon,
      kernel_regularizer=l2_regularizer)
