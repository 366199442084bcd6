"""Boundary Refinement (SA-FPN/EJ-Head, Fig. 3 and Table 5).

A block on the joint RoI feature pathway, channels unchanged:

  'residual' (the paper's BR): out = x + conv3x3(relu(conv3x3(x)))
  'conv1' / 'conv2' / 'conv3': 1, 2 or 3 plain stacked conv3x3 + ReLU
  'none': identity

No normalization (design notes §1, after Peng et al. 2017). The residual
branch's second conv can start at zero so the block starts as the identity.
"""

from typing import Any, Mapping, Optional

import tensorflow as tf
import tf_keras

VARIANTS = ('none', 'conv1', 'conv2', 'conv3', 'residual')


@tf_keras.utils.register_keras_serializable(package='tf_mtdet')
class BoundaryRefinement(tf_keras.layers.Layer):
  """Refines RoI features [B, N, k, k, C] (or [M, k, k, C]); same shape out."""

  def __init__(self,
               variant: str = 'residual',
               zero_init_last: bool = False,
               kernel_initializer: str = 'VarianceScaling',
               kernel_regularizer: Optional[
                   tf_keras.regularizers.Regularizer] = None,
               **kwargs):
    """Initializes the block.

    Args:
      variant: One of VARIANTS (Table 5 rows).
      zero_init_last: Start the residual branch's second conv at zero, so
        the block is the identity at initialisation.
      kernel_initializer: Conv kernel initializer.
      kernel_regularizer: Conv kernel regularizer.
      **kwargs: Layer arguments.
    """
    super().__init__(**kwargs)
    if variant not in VARIANTS:
      raise ValueError(f'variant must be one of {VARIANTS}, got {variant!r}')
    self._config_dict = {
        'variant': variant, 'zero_init_last': zero_init_last,
        'kernel_initializer': kernel_initializer,
        'kernel_regularizer': kernel_regularizer,
    }
    self._convs = []

  def build(self, input_shape):
    channels = int(input_shape[-1])
    variant = self._config_dict['variant']
    count = {'none': 0, 'conv1': 1, 'conv2': 2, 'conv3': 3,
             'residual': 2}[variant]
    for i in range(count):
      last_residual = variant == 'residual' and i == count - 1
      initializer = ('zeros' if last_residual and
                     self._config_dict['zero_init_last'] else
                     self._config_dict['kernel_initializer'])
      self._convs.append(tf_keras.layers.Conv2D(
          channels, 3, padding='same', name=f'conv_{i}',
          activation=None if last_residual else 'relu',
          kernel_initializer=initializer,
          kernel_regularizer=self._config_dict['kernel_regularizer']))
    super().build(input_shape)

  def call(self, features: tf.Tensor) -> tf.Tensor:
    if not self._convs:
      return features
    shape = tf.shape(features)
    # RoI features carry [batch, rois] in front of the spatial dims.
    x = tf.reshape(features, tf.concat([[-1], shape[-3:]], axis=0))
    y = x
    for conv in self._convs:
      y = conv(y)
    if self._config_dict['variant'] == 'residual':
      y = x + y
    return tf.reshape(y, tf.concat([shape[:-3], tf.shape(y)[-3:]], axis=0))

  def get_config(self) -> Mapping[str, Any]:
    config = super().get_config()
    config.update(self._config_dict)
    return config

  @classmethod
  def from_config(cls, config, custom_objects=None):
    return cls(**config)
