"""`get_config` / `from_config` for layers that keep their constructor
arguments in `self._config_dict`, a `kernel_regularizer` among them."""

from typing import Any, Mapping

import tf_keras


def serialize_regularizer(config: Mapping[str, Any]) -> dict:
  """A copy of a constructor config with its `kernel_regularizer` serialised."""
  config = dict(config)
  if config.get('kernel_regularizer'):
    config['kernel_regularizer'] = tf_keras.regularizers.serialize(
        config['kernel_regularizer'])
  return config


def deserialize_regularizer(config: Mapping[str, Any]) -> dict:
  """The inverse of `serialize_regularizer`."""
  config = dict(config)
  if config.get('kernel_regularizer'):
    config['kernel_regularizer'] = tf_keras.regularizers.deserialize(
        config['kernel_regularizer'])
  return config


class RegularizedLayerConfig:
  """Mixin (before `tf_keras.layers.Layer` in the bases): the config is the
  layer's own plus `_config_dict`, the regularizer serialised."""

  def get_config(self) -> Mapping[str, Any]:
    return {**super().get_config(), **serialize_regularizer(self._config_dict)}

  @classmethod
  def from_config(cls, config, custom_objects=None):
    return cls(**deserialize_regularizer(config))
