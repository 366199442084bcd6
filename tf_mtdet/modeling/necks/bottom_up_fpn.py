"""Bottom-up FPNs of SA-FPN (Ni & Yao, Fig. 2b and 2c).

Each backbone level C_l gets a 1x1 lateral N_l; the pyramid is built from the
finest level up:

  BU-FPN  (Fig. 2b): B_l = conv3x3(N_l + down(B_{l-1}))
  BUF-FPN (Fig. 2c): B_l = conv3x3(N_l + down(B_{l-1}) + up2(N_{l+1}))

with down a 3x3 stride-2 conv and up2 nearest upsampling, so the two differ
exactly in the deeper-neighbour input (`fuse_deeper`). Levels above the
backbone's are max-pooled (k=1, s=2) from the one below, as FPN's P6.
"""

from typing import Any, Mapping, Optional

import tensorflow as tf
import tf_keras

from official.modeling import hyperparams
from official.vision.modeling.decoders import factory as decoder_factory


@tf_keras.utils.register_keras_serializable(package='tf_mtdet')
class BottomUpFPN(tf_keras.Model):
  """Bottom-up feature pyramid (BU-FPN or, with `fuse_deeper`, BUF-FPN)."""

  def __init__(self,
               input_specs: Mapping[str, tf.TensorShape],
               min_level: int = 2,
               max_level: int = 6,
               num_filters: int = 256,
               fuse_deeper: bool = False,
               use_norm: bool = True,
               activation: str = 'relu',
               use_sync_bn: bool = False,
               norm_momentum: float = 0.99,
               norm_epsilon: float = 0.001,
               kernel_initializer: str = 'VarianceScaling',
               kernel_regularizer: Optional[
                   tf_keras.regularizers.Regularizer] = None,
               **kwargs):
    """Initializes the pyramid.

    Args:
      input_specs: {level: TensorShape [B, H, W, C]} of the backbone.
      min_level: Lowest output level (stride 2^min_level).
      max_level: Highest output level.
      num_filters: Channels of every output level.
      fuse_deeper: Add the upsampled deeper lateral (BUF-FPN).
      use_norm: Batch norm after each conv (as Model Garden's FPN).
      activation: Activation after the downsampling convs.
      use_sync_bn: Synchronized batch norm across replicas.
      norm_momentum: Batch norm momentum.
      norm_epsilon: Batch norm epsilon.
      kernel_initializer: Conv kernel initializer.
      kernel_regularizer: Conv kernel regularizer.
      **kwargs: `tf_keras.Model` arguments.

    Input: {level: [B, H / 2^level, W / 2^level, C_level]} (H, W multiples of
    2^max_level). Output: {str(level): [B, H / 2^level, W / 2^level,
    num_filters]} for min_level..max_level.
    """
    self._config_dict = {
        'input_specs': input_specs, 'min_level': min_level,
        'max_level': max_level, 'num_filters': num_filters,
        'fuse_deeper': fuse_deeper, 'use_norm': use_norm,
        'activation': activation, 'use_sync_bn': use_sync_bn,
        'norm_momentum': norm_momentum, 'norm_epsilon': norm_epsilon,
        'kernel_initializer': kernel_initializer,
        'kernel_regularizer': kernel_regularizer,
    }
    conv_kwargs = dict(kernel_initializer=kernel_initializer,
                       kernel_regularizer=kernel_regularizer)
    norm_cls = (tf_keras.layers.experimental.SyncBatchNormalization
                if use_sync_bn else tf_keras.layers.BatchNormalization)
    axis = -1

    def norm(x, name):
      if not use_norm:
        return x
      return norm_cls(axis=axis, momentum=norm_momentum,
                      epsilon=norm_epsilon, name=name)(x)

    inputs = {k: tf_keras.Input(shape=v[1:], name=f'level_{k}')
              for k, v in input_specs.items()}
    top = min(max(int(k) for k in input_specs), max_level)
    laterals = {
        level: tf_keras.layers.Conv2D(num_filters, 1, padding='same',
                                      name=f'lateral_{level}', **conv_kwargs)(
                                          inputs[str(level)])
        for level in range(min_level, top + 1)}
    feats = {}
    for level in range(min_level, top + 1):
      x = laterals[level]
      if level > min_level:
        down = tf_keras.layers.Conv2D(num_filters, 3, strides=2,
                                      padding='same', name=f'down_{level}',
                                      **conv_kwargs)(feats[level - 1])
        down = norm(down, f'down_norm_{level}')
        x = x + tf_keras.layers.Activation(activation)(down)
      if fuse_deeper and level < top:
        x = x + tf_keras.layers.UpSampling2D(
            2, interpolation='nearest')(laterals[level + 1])
      x = tf_keras.layers.Conv2D(num_filters, 3, padding='same',
                                 name=f'output_{level}', **conv_kwargs)(x)
      feats[level] = norm(x, f'output_norm_{level}')
    for level in range(top + 1, max_level + 1):
      feats[level] = tf_keras.layers.MaxPool2D(
          1, strides=2, name=f'pool_{level}')(feats[level - 1])
    outputs = {str(level): feats[level]
               for level in range(min_level, max_level + 1)}
    super().__init__(inputs=inputs, outputs=outputs, **kwargs)
    self._output_specs = {k: v.get_shape() for k, v in outputs.items()}

  @property
  def output_specs(self) -> Mapping[str, tf.TensorShape]:
    return self._output_specs

  def get_config(self) -> Mapping[str, Any]:
    return dict(self._config_dict)

  @classmethod
  def from_config(cls, config, custom_objects=None):
    return cls(**config)


def _norm_kwargs(model_config: hyperparams.Config) -> dict[str, Any]:
  norm = model_config.norm_activation
  return dict(activation=norm.activation, use_sync_bn=norm.use_sync_bn,
              norm_momentum=norm.norm_momentum,
              norm_epsilon=norm.norm_epsilon)


@decoder_factory.register_decoder_builder('bu_fpn')
def build_bu_fpn(input_specs: Mapping[str, tf.TensorShape],
                 model_config: hyperparams.Config,
                 l2_regularizer: Optional[
                     tf_keras.regularizers.Regularizer] = None
                 ) -> BottomUpFPN:
  """BU-FPN, or BUF-FPN with `decoder.bu_fpn.fuse_deeper` (Table 3)."""
  cfg = model_config.decoder.bu_fpn
  return BottomUpFPN(
      input_specs, min_level=model_config.min_level,
      max_level=model_config.max_level, num_filters=cfg.num_filters,
      fuse_deeper=cfg.fuse_deeper, use_norm=cfg.use_norm,
      kernel_regularizer=l2_regularizer, **_norm_kwargs(model_config))
