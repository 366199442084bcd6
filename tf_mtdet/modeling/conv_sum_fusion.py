"""DATNet's fusion variants with convs after the sum (Table 5).

'sum2conv' / 'sum4conv': P'_l = convs(P_l + sum over heads of resize(F_head)),
`num_convs` conv3x3 + ReLU layers whose weights every level shares (the
paper: "the layers are shared across all FPN scales"). The parameter-free
'sum' is `feature_fusion.SumFusion`.
"""

from typing import Mapping, Optional, Sequence

import tensorflow as tf
import tf_keras

from tf_mtdet.config import two_stage as two_stage_config
from tf_mtdet.modeling import feature_fusion
from tf_mtdet.modeling import layer_config
from tf_mtdet.modeling import registry


@tf_keras.utils.register_keras_serializable(package='tf_mtdet')
class ConvSumFusion(layer_config.RegularizedLayerConfig,
                    tf_keras.layers.Layer):
  """`SumFusion`, then `num_convs` shared conv3x3 + ReLU on every fused
  level (`levels`; the others pass unchanged).

  Shapes: features {level: [B, H_l, W_l, C]}; each head's
  `fusion_features` [B, h, w, C] -> {level: [B, H_l, W_l, num_filters]}.
  """

  def __init__(self, num_convs: int = 2, num_filters: int = 256,
               levels: Optional[Sequence[int]] = None,
               kernel_regularizer: Optional[
                   tf_keras.regularizers.Regularizer] = None, **kwargs):
    super().__init__(**kwargs)
    if num_convs < 1:
      raise ValueError(f'num_convs must be >= 1, got {num_convs}')
    self._config_dict = dict(num_convs=num_convs, num_filters=num_filters,
                             levels=levels,
                             kernel_regularizer=kernel_regularizer)
    self._sum = feature_fusion.SumFusion(levels, name='sum')
    self._convs = [
        tf_keras.layers.Conv2D(
            num_filters, 3, padding='same', activation='relu',
            kernel_regularizer=kernel_regularizer,
            kernel_initializer=tf_keras.initializers.RandomNormal(stddev=0.01),
            name=f'conv_{i}')
        for i in range(num_convs)]

  def call(self, features: Mapping[str, tf.Tensor],
           aux_outputs: Mapping[str, Mapping[str, tf.Tensor]]
           ) -> dict[str, tf.Tensor]:
    fused = self._sum(features, aux_outputs)
    out = {}
    for level, value in fused.items():
      if self._sum.fuses(level):
        for conv in self._convs:
          value = conv(value)
      out[level] = value
    return out


def _build(part: two_stage_config.ConvSumFusion, model_cfg,
           l2_regularizer=None) -> ConvSumFusion:
  del model_cfg
  return ConvSumFusion(part.num_convs, part.num_filters, part.levels,
                       kernel_regularizer=l2_regularizer,
                       name='feature_fusion')


registry.register('feature_fusion', 'sum2conv')(_build)
registry.register('feature_fusion', 'sum4conv')(_build)
