"""EJ-Head's joint RoI pathway (SA-FPN/EJ-Head, Fig. 1b).

The box and mask branches read RoI features through one shared block
(Boundary Refinement): `RefinedRoIPooler` wraps a pooler and that block, and
the factory hands the same block to the box and the mask pooler, so both
branches train one set of refinement weights.
"""

from typing import Any, Mapping

import tensorflow as tf
import tf_keras


@tf_keras.utils.register_keras_serializable(package='tf_mtdet')
class RefinedRoIPooler(tf_keras.layers.Layer):
  """`(features, boxes) -> refinement(pooler(features, boxes))`.

  Shapes: features {level: [B, H_l, W_l, C]}, boxes [B, N, 4] ->
  [B, N, k, k, C].
  """

  def __init__(self, pooler: tf_keras.layers.Layer,
               refinement: tf_keras.layers.Layer, **kwargs):
    super().__init__(**kwargs)
    self.pooler = pooler
    self.refinement = refinement

  def call(self, features: Mapping[str, tf.Tensor],
           boxes: tf.Tensor) -> tf.Tensor:
    return self.refinement(self.pooler(features, boxes))

  def get_config(self) -> Mapping[str, Any]:
    config = super().get_config()
    config.update(
        pooler=tf_keras.utils.serialize_keras_object(self.pooler),
        refinement=tf_keras.utils.serialize_keras_object(self.refinement))
    return config

  @classmethod
  def from_config(cls, config, custom_objects=None):
    config = dict(config)
    config['pooler'] = tf_keras.utils.deserialize_keras_object(
        config['pooler'], custom_objects=custom_objects)
    config['refinement'] = tf_keras.utils.deserialize_keras_object(
        config['refinement'], custom_objects=custom_objects)
    return cls(**config)
