"""FPN without normalisation, P6 by subsampling P5 (maskrcnn-benchmark's FPN).

DATNet builds on maskrcnn-benchmark (Sec. 3.3) and "does not make use of
synchronized batch normalization" (Sec. 4): its FPN is Lin et al.'s, lateral
conv1x1, nearest x2 top-down + add, conv3x3 outputs, no normalisation, and
"an extra layer P6 generated from subsampling P5" (Fig. 2a: a max pool of
kernel 1, stride 2). Model Garden's FPN normalises every output and makes P6
by a stride-2 conv3x3 (590k more parameters). Same output contract as Model
Garden's FPN; levels above P6 subsample again.
"""

from typing import Any, Mapping, Optional

import tensorflow as tf
import tf_keras

from official.modeling import hyperparams
from official.vision.modeling.decoders import factory as decoder_factory
from official.vision.ops import spatial_transform_ops


@tf_keras.utils.register_keras_serializable(package='tf_mtdet')
class PlainFPN(tf_keras.Model):
  """{level: [B, H_l, W_l, C_l]} backbone -> {level: [B, H_l, W_l,
  num_filters]} for min_level..max_level, no normalisation."""

  def __init__(self,
               input_specs: Mapping[str, tf.TensorShape],
               min_level: int = 2,
               max_level: int = 6,
               num_filters: int = 256,
               kernel_regularizer: Optional[
                   tf_keras.regularizers.Regularizer] = None,
               **kwargs):
    """Initializes the FPN.

    Args:
      input_specs: {level: TensorShape [B, H, W, C]} of the backbone.
      min_level: Lowest output level.
      max_level: Highest output level (above the backbone's: subsampled).
      num_filters: Channels of every output level.
      kernel_regularizer: Conv kernel regularizer.
      **kwargs: `tf_keras.Model` arguments.
    """
    self._config_dict = {
        'input_specs': input_specs, 'min_level': min_level,
        'max_level': max_level, 'num_filters': num_filters,
        'kernel_regularizer': kernel_regularizer,
    }
    inputs = {k: tf_keras.Input(shape=v[1:], name=f'level_{k}')
              for k, v in input_specs.items()}
    top = min(max(int(k) for k in inputs), max_level)
    if min(int(k) for k in inputs) > min_level:
      raise ValueError(f'the backbone has no level {min_level}')

    # maskrcnn-benchmark's FPN convs: kaiming_uniform_(a=1), zero bias.
    conv = lambda size, name: tf_keras.layers.Conv2D(
        num_filters, size, padding='same',
        kernel_initializer=tf_keras.initializers.VarianceScaling(
            scale=1.0, mode='fan_in', distribution='uniform'),
        kernel_regularizer=kernel_regularizer, name=name)
    lateral = {l: conv(1, f'lateral_{l}')(inputs[str(l)])
               for l in range(min_level, top + 1)}
    merged = {top: lateral[top]}
    for level in range(top - 1, min_level - 1, -1):
      merged[level] = lateral[level] + spatial_transform_ops.nearest_upsampling(
          merged[level + 1], 2)
    outputs = {str(l): conv(3, f'post_hoc_{l}')(merged[l])
               for l in range(min_level, top + 1)}
    for level in range(top + 1, max_level + 1):
      outputs[str(level)] = tf_keras.layers.MaxPool2D(
          pool_size=1, strides=2, padding='same',
          name=f'subsample_{level}')(outputs[str(level - 1)])
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


@decoder_factory.register_decoder_builder('plain_fpn')
def build_plain_fpn(input_specs: Mapping[str, tf.TensorShape],
                    model_config: hyperparams.Config,
                    l2_regularizer: Optional[
                        tf_keras.regularizers.Regularizer] = None
                    ) -> PlainFPN:
  """DATNet's (maskrcnn-benchmark's) FPN from `model.decoder.plain_fpn`."""
  return PlainFPN(
      input_specs, min_level=model_config.min_level,
      max_level=model_config.max_level,
      num_filters=model_config.decoder.plain_fpn.num_filters,
      kernel_regularizer=l2_regularizer)
