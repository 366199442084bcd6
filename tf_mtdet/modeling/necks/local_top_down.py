"""Local Top-Down (LTD) neck of LTD-SSD, with IvaNet's 384-channel outputs.

For prediction level L_i with its two coarser neighbours L_{i+1}, L_{i+2}:

  U1_i = relu(bn(conv3x3(up(L_{i+1}))))
  U2_i = up(U1_{i+1})            (L_{i+2} goes up twice via U1_{i+1})
  E_i  = relu(bn(conv1x1(L_i)) + U2_i)
  out_i = conv1x1_384(concat[L_i, U1_i, E_i])

the second-to-last level gets concat[L, U1], the last one L alone (each then
projected to `output_filters`). `up` is a stride-2 k2 deconvolution, resized
bilinearly to the finer level's size where that is not exactly double (SSD's
odd sizes, e.g. 3 -> 5). So each output sees its own level and its next two
coarser ones only: the local top-down of LTD-SSD, not FPN's whole pyramid.
"""

from typing import Any, Mapping, Optional

import tensorflow as tf
import tf_keras

from official.modeling import hyperparams
from official.vision.modeling.decoders import factory as decoder_factory


@tf_keras.utils.register_keras_serializable(package='tf_mtdet')
class ResizeLike(tf_keras.layers.Layer):
  """[B, h, w, C], [B, H, W, *] -> [B, H, W, C] (bilinear; identity when the
  sizes already match)."""

  def call(self, inputs):
    x, like = inputs
    size = tf.shape(like)[1:3]
    static_x, static_like = x.shape[1:3], like.shape[1:3]
    if (static_x.is_fully_defined() and static_like.is_fully_defined() and
        static_x == static_like):
      return x
    return tf.image.resize(x, size, method='bilinear')


@tf_keras.utils.register_keras_serializable(package='tf_mtdet')
class LocalTopDown(tf_keras.Model):
  """LTD modules on every level of a trunk's pyramid."""

  def __init__(self,
               input_specs: Mapping[str, tf.TensorShape],
               min_level: int = 3,
               max_level: int = 8,
               num_filters: int = 128,
               output_filters: int = 384,
               activation: str = 'relu',
               use_sync_bn: bool = False,
               norm_momentum: float = 0.99,
               norm_epsilon: float = 0.001,
               kernel_initializer: str = 'VarianceScaling',
               kernel_regularizer: Optional[
                   tf_keras.regularizers.Regularizer] = None,
               **kwargs):
    """Initializes the neck.

    Args:
      input_specs: {level: TensorShape [B, H_l, W_l, C_l]} of the trunk.
      min_level: Finest level.
      max_level: Coarsest level.
      num_filters: Width of U1, U2 and the residual branch R.
      output_filters: Channels of every output (1x1 conv after the concat);
        0 keeps the concatenation (LTD-SSD).
      activation: Activation.
      use_sync_bn: Synchronized batch norm.
      norm_momentum: Batch norm momentum.
      norm_epsilon: Batch norm epsilon.
      kernel_initializer: Conv kernel initializer.
      kernel_regularizer: Conv kernel regularizer.
      **kwargs: `tf_keras.Model` arguments.

    Input {str(l): [B, H_l, W_l, C_l]}; output {str(l): [B, H_l, W_l,
    output_filters]} for l in [min_level, max_level].
    """
    self._config_dict = dict(
        input_specs=input_specs, min_level=min_level, max_level=max_level,
        num_filters=num_filters, output_filters=output_filters,
        activation=activation, use_sync_bn=use_sync_bn,
        norm_momentum=norm_momentum, norm_epsilon=norm_epsilon,
        kernel_initializer=kernel_initializer,
        kernel_regularizer=kernel_regularizer)
    conv_args = dict(kernel_initializer=kernel_initializer,
                     kernel_regularizer=kernel_regularizer)
    norm = (tf_keras.layers.experimental.SyncBatchNormalization if use_sync_bn
            else tf_keras.layers.BatchNormalization)
    norm_args = dict(momentum=norm_momentum, epsilon=norm_epsilon)
    act = lambda name: tf_keras.layers.Activation(activation, name=name)

    inputs = {str(l): tf_keras.Input(shape=input_specs[str(l)][1:],
                                     name=f'level_{l}')
              for l in range(min_level, max_level + 1)}

    def up(x, like, name):
      x = tf_keras.layers.Conv2DTranspose(num_filters, 2, strides=2,
                                          name=f'{name}_deconv',
                                          **conv_args)(x)
      return ResizeLike(name=f'{name}_resize')([x, like])

    # U1_i from L_{i+1}, for every level but the last.
    u1 = {}
    for l in range(min_level, max_level):
      x = up(inputs[str(l + 1)], inputs[str(l)], f'u1_l{l}')
      x = tf_keras.layers.Conv2D(num_filters, 3, padding='same',
                                 name=f'u1_l{l}_conv', **conv_args)(x)
      x = norm(name=f'u1_l{l}_norm', **norm_args)(x)
      u1[l] = act(f'u1_l{l}_act')(x)
    outputs = {}
    for l in range(min_level, max_level + 1):
      parts = [inputs[str(l)]]
      if l + 1 <= max_level:
        parts.append(u1[l])
      if l + 2 <= max_level:
        u2 = up(u1[l + 1], inputs[str(l)], f'u2_l{l}')
        r = tf_keras.layers.Conv2D(num_filters, 1, name=f'r_l{l}_conv',
                                   **conv_args)(inputs[str(l)])
        r = norm(name=f'r_l{l}_norm', **norm_args)(r)
        e = act(f'e_l{l}_act')(tf_keras.layers.Add(name=f'e_l{l}_add')([r, u2]))
        parts.append(e)
      x = (tf_keras.layers.Concatenate(axis=-1, name=f'concat_l{l}')(parts)
           if len(parts) > 1 else parts[0])
      if output_filters:
        x = tf_keras.layers.Conv2D(output_filters, 1, name=f'out_l{l}_conv',
                                   **conv_args)(x)
        x = act(f'out_l{l}_act')(x)
      outputs[str(l)] = x
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


@decoder_factory.register_decoder_builder('ltd')
def build_local_top_down(input_specs: Mapping[str, tf.TensorShape],
                         model_config: hyperparams.Config,
                         l2_regularizer: Optional[
                             tf_keras.regularizers.Regularizer] = None
                         ) -> LocalTopDown:
  """The LTD neck from `decoder.ltd` and `norm_activation`."""
  cfg = model_config.decoder.ltd
  norm = model_config.norm_activation
  return LocalTopDown(
      input_specs, min_level=model_config.min_level,
      max_level=model_config.max_level, num_filters=cfg.num_filters,
      output_filters=cfg.output_filters, activation=norm.activation,
      use_sync_bn=norm.use_sync_bn, norm_momentum=norm.norm_momentum,
      norm_epsilon=norm.norm_epsilon, kernel_regularizer=l2_regularizer)
