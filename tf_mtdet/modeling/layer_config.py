"""`get_config` / `from_config` for layers that keep their constructor
arguments in `self._config_dict`, a `kernel_regularizer` among them."""

from typing import Any, Mapping

import tf_keras


class RegularizedLayerConfig:
  """Mixin (before `tf_keras.layers.Layer` in the bases): the config is the
  layer's own plus `_config_dict`, the regularizer serialised."""

  def get_config(self) -> Mapping[str, Any]:
    config = dict(self._config_dict)
    if config.get('kernel_regularizer'):
      config['kernel_regularizer'] = tf_keras.regularizers.serialize(
          config['kernel_regularizer'])
    return {**super().get_config(), **config}

  @classmethod
  def from_config(cls, config, custom_objects=None):
    config = dict(config)
    if config.get('kernel_regularizer'):
      config['kernel_regularizer'] = tf_keras.regularizers.deserialize(
          config['kernel_regularizer'])
    return cls(**config)
