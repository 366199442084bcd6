"""SA-FPN (Ni & Yao): the top-down FPN and BUF-FPN fused per level.

  'concat' (SA-FPN): P_l = conv1x1(concat[TD_l, BUF_l]) -> num_filters
  'add' (Table 3 "TD-FPN add BUF-FPN"): P_l = TD_l + BUF_l

TD is Model Garden's FPN; BUF is `BottomUpFPN(fuse_deeper=True)` (or BU-FPN
with `fuse_deeper=False`). Same output contract as FPN.
"""

from typing import Any, Mapping, Optional

import tensorflow as tf
import tf_keras

from official.modeling import hyperparams
from official.vision.modeling.decoders import factory as decoder_factory
from official.vision.modeling.decoders import fpn

from tf_mtdet.modeling.necks import bottom_up_fpn

FUSIONS = ('concat', 'add')


@tf_keras.utils.register_keras_serializable(package='tf_mtdet')
class ScaleAwareFPN(tf_keras.Model):
  """Top-down FPN and bottom-up FPN fused level by level."""

  def __init__(self,
               input_specs: Mapping[str, tf.TensorShape],
               min_level: int = 2,
               max_level: int = 6,
               num_filters: int = 256,
               fusion: str = 'concat',
               fuse_deeper: bool = True,
               use_norm: bool = True,
               activation: str = 'relu',
               use_sync_bn: bool = False,
               norm_momentum: float = 0.99,
               norm_epsilon: float = 0.001,
               kernel_initializer: str = 'VarianceScaling',
               kernel_regularizer: Optional[
                   tf_keras.regularizers.Regularizer] = None,
               **kwargs):
    """Initializes SA-FPN.

    Args:
      input_specs: {level: TensorShape [B, H, W, C]} of the backbone.
      min_level: Lowest output level.
      max_level: Highest output level.
      num_filters: Channels of every output level.
      fusion: 'concat' (SA-FPN: concat then 1x1 conv) or 'add'.
      fuse_deeper: The bottom-up path is BUF-FPN (True) or BU-FPN.
      use_norm: Batch norm in the bottom-up path (Model Garden's FPN always
        normalizes its outputs).
      activation: Activation of the bottom-up downsampling convs.
      use_sync_bn: Synchronized batch norm.
      norm_momentum: Batch norm momentum.
      norm_epsilon: Batch norm epsilon.
      kernel_initializer: Conv kernel initializer.
      kernel_regularizer: Conv kernel regularizer.
      **kwargs: `tf_keras.Model` arguments.
    """
    if fusion not in FUSIONS:
      raise ValueError(f'fusion must be one of {FUSIONS}, got {fusion!r}')
    self._config_dict = {
        'input_specs': input_specs, 'min_level': min_level,
        'max_level': max_level, 'num_filters': num_filters, 'fusion': fusion,
        'fuse_deeper': fuse_deeper, 'use_norm': use_norm,
        'activation': activation, 'use_sync_bn': use_sync_bn,
        'norm_momentum': norm_momentum, 'norm_epsilon': norm_epsilon,
        'kernel_initializer': kernel_initializer,
        'kernel_regularizer': kernel_regularizer,
    }
    common = dict(min_level=min_level, max_level=max_level,
                  num_filters=num_filters, activation=activation,
                  use_sync_bn=use_sync_bn, norm_momentum=norm_momentum,
                  norm_epsilon=norm_epsilon,
                  kernel_initializer=kernel_initializer,
                  kernel_regularizer=kernel_regularizer)
    inputs = {k: tf_keras.Input(shape=v[1:], name=f'level_{k}')
              for k, v in input_specs.items()}
    top_down = fpn.FPN(input_specs, name='top_down_fpn', **common)
    bottom_up = bottom_up_fpn.BottomUpFPN(
        input_specs, fuse_deeper=fuse_deeper, use_norm=use_norm,
        name='bottom_up_fpn', **common)
    td, bu = top_down(inputs), bottom_up(inputs)
    outputs = {}
    for level in range(min_level, max_level + 1):
      key = str(level)
      if fusion == 'add':
        outputs[key] = tf_keras.layers.Add(name=f'fuse_{level}')(
            [td[key], bu[key]])
      else:
        outputs[key] = tf_keras.layers.Conv2D(
            num_filters, 1, name=f'fuse_{level}',
            kernel_initializer=kernel_initializer,
            kernel_regularizer=kernel_regularizer)(
                tf_keras.layers.Concatenate(axis=-1)([td[key], bu[key]]))
    super().__init__(inputs=inputs, outputs=outputs, **kwargs)
    self.top_down, self.bottom_up = top_down, bottom_up
    self._output_specs = {k: v.get_shape() for k, v in outputs.items()}

  @property
  def output_specs(self) -> Mapping[str, tf.TensorShape]:
    return self._output_specs

  def get_config(self) -> Mapping[str, Any]:
    return dict(self._config_dict)

  @classmethod
  def from_config(cls, config, custom_objects=None):
    return cls(**config)


@decoder_factory.register_decoder_builder('sa_fpn')
def build_sa_fpn(input_specs: Mapping[str, tf.TensorShape],
                 model_config: hyperparams.Config,
                 l2_regularizer: Optional[
                     tf_keras.regularizers.Regularizer] = None
                 ) -> ScaleAwareFPN:
  """SA-FPN ('concat') or "TD-FPN add BUF-FPN" ('add') from the config."""
  cfg = model_config.decoder.sa_fpn
  norm = model_config.norm_activation
  return ScaleAwareFPN(
      input_specs, min_level=model_config.min_level,
      max_level=model_config.max_level, num_filters=cfg.num_filters,
      fusion=cfg.fusion, fuse_deeper=cfg.fuse_deeper, use_norm=cfg.use_norm,
      activation=norm.activation, use_sync_bn=norm.use_sync_bn,
      norm_momentum=norm.norm_momentum, norm_epsilon=norm.norm_epsilon,
      kernel_regularizer=l2_regularizer)
