"""DATNet's res5 RoI heads (Levinshtein et al., Sec. 3.3, Fig. 4; Table 3).

* `RoIRes5`: ResNet's conv5 stage (the backbone's bottleneck blocks, stride 2
  in the first, projection shortcut; grouped with `cardinality` > 1; with a
  'resnext' backbone its stride placement, padding and frozen BN, and its
  ImageNet res5 weights under `--init-checkpoint`) run on every
  pooled RoI: [B, N, k, k, C] -> [B, N, k/2, k/2, 4 * filters]. Registered
  as the 'res5' 'roi_refinement': DATNet Heavy's trunk shared by the box and
  mask branches.
* `PooledBoxPredictor`: average pool, then the class and box FCs.
  Registered as the 'avg_pool' 'box_head' (Heavy: after the shared trunk).
* 'res5' 'box_head' (Light, Table 3's res5 extractor): `RoIRes5` then
  `PooledBoxPredictor`.
* `DeconvMaskHead`: maskrcnn-benchmark's mask head, no normalisation:
  `num_convs` conv3x3 + ReLU, stride-2 transposed conv (upsampling) + ReLU,
  a 1x1 conv per class: [B, N, k, k, C] -> [B, N, 2k, 2k] logits of the
  RoI's class. Registered as the 'conv_deconv' 'mask_head': Heavy's on the
  shared res5 (num_convs 0, Fig. 4 right), Light's on MSPwA (num_convs 4,
  Fig. 4 left).
"""

from typing import Any, Mapping, Optional

import tensorflow as tf
import tf_keras

from official.modeling import tf_utils

from tf_mtdet.config import two_stage as two_stage_config
from tf_mtdet.modeling import layer_config
from tf_mtdet.modeling import registry
from tf_mtdet.modeling.backbones import resnext


def _merge_rois(x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
  """[B, N, h, w, C] -> ([B * N, h, w, C], [B, N])."""
  shape = tf.shape(x)
  return tf.reshape(x, tf.concat([[-1], shape[2:]], 0)), shape[:2]


@tf_keras.utils.register_keras_serializable(package='tf_mtdet')
class RoIRes5(tf_keras.layers.Layer):
  """ResNet's res5 stage on RoI features: [B, N, k, k, C] ->
  [B, N, ceil(k / strides), ceil(k / strides), 4 * filters]."""

  def __init__(self, filters: int = 512, num_blocks: int = 3,
               strides: int = 2, cardinality: int = 1,
               bottleneck_width: int = 0, stride_in_1x1: bool = False,
               padding: str = 'same', frozen_bn: bool = False,
               use_sync_bn: bool = False,
               norm_momentum: float = 0.99, norm_epsilon: float = 0.001,
               activation: str = 'relu',
               kernel_regularizer: Optional[
                   tf_keras.regularizers.Regularizer] = None, **kwargs):
    super().__init__(**kwargs)
    self._config_dict = dict(
        filters=filters, num_blocks=num_blocks, strides=strides,
        cardinality=cardinality, bottleneck_width=bottleneck_width,
        stride_in_1x1=stride_in_1x1, padding=padding, frozen_bn=frozen_bn,
        use_sync_bn=use_sync_bn, norm_momentum=norm_momentum,
        norm_epsilon=norm_epsilon, activation=activation,
        kernel_regularizer=kernel_regularizer)
    # The backbone's own blocks (a ResNet's with cardinality 1), so the
    # ImageNet res5 loads into them (`init_checkpoint.copy_res5`).
    self._blocks = [
        resnext.ResNeXtBlock(
            bottleneck_width or filters, 4 * filters, cardinality,
            strides=strides if i == 0 else 1, use_projection=i == 0,
            stride_in_1x1=stride_in_1x1, padding=padding,
            frozen_bn=frozen_bn, use_sync_bn=use_sync_bn,
            norm_momentum=norm_momentum, norm_epsilon=norm_epsilon,
            activation=activation, kernel_regularizer=kernel_regularizer,
            name=f'block_{i}')
        for i in range(num_blocks)]

  @property
  def blocks(self) -> list[resnext.ResNeXtBlock]:
    return list(self._blocks)

  def call(self, roi_features: tf.Tensor, training=None) -> tf.Tensor:
    x, leading = _merge_rois(roi_features)
    for block in self._blocks:
      x = block(x, training=training)
    return tf.reshape(x, tf.concat([leading, tf.shape(x)[1:]], 0))

  def get_config(self) -> Mapping[str, Any]:
    return {**super().get_config(),
            **layer_config.serialize_regularizer(self._config_dict)}

  @classmethod
  def from_config(cls, config, custom_objects=None):
    return cls(**layer_config.deserialize_regularizer(config))


@tf_keras.utils.register_keras_serializable(package='tf_mtdet')
class PooledBoxPredictor(tf_keras.layers.Layer):
  """[B, N, h, w, C] -> average pool -> (class logits [B, N, num_classes],
  box deltas [B, N, 4 * num_classes], or [B, N, 4] class-agnostic)."""

  def __init__(self, num_classes: int, class_agnostic_bbox_pred: bool = False,
               kernel_regularizer: Optional[
                   tf_keras.regularizers.Regularizer] = None, **kwargs):
    super().__init__(**kwargs)
    self._config_dict = dict(
        num_classes=num_classes,
        class_agnostic_bbox_pred=class_agnostic_bbox_pred,
        kernel_regularizer=kernel_regularizer)
    # Model Garden's DetectionHead initialisation of the two predictors.
    self._classifier = tf_keras.layers.Dense(
        num_classes,
        kernel_initializer=tf_keras.initializers.RandomNormal(stddev=0.01),
        kernel_regularizer=kernel_regularizer, name='detection-scores')
    self._box_regressor = tf_keras.layers.Dense(
        4 if class_agnostic_bbox_pred else 4 * num_classes,
        kernel_initializer=tf_keras.initializers.RandomNormal(stddev=0.001),
        kernel_regularizer=kernel_regularizer, name='detection-boxes')

  def call(self, roi_features: tf.Tensor, training=None):
    del training
    pooled = tf.reduce_mean(roi_features, axis=[2, 3])
    return self._classifier(pooled), self._box_regressor(pooled)

  def get_config(self) -> Mapping[str, Any]:
    return {**super().get_config(),
            **layer_config.serialize_regularizer(self._config_dict)}

  @classmethod
  def from_config(cls, config, custom_objects=None):
    return cls(**layer_config.deserialize_regularizer(config))


@tf_keras.utils.register_keras_serializable(package='tf_mtdet')
class Res5BoxHead(tf_keras.layers.Layer):
  """`RoIRes5` then `PooledBoxPredictor`: [B, N, k, k, C] -> (class logits,
  box deltas)."""

  def __init__(self, res5: RoIRes5, predictor: PooledBoxPredictor, **kwargs):
    super().__init__(**kwargs)
    self.res5 = res5
    self.predictor = predictor

  def call(self, roi_features: tf.Tensor, training=None):
    return self.predictor(self.res5(roi_features, training=training))

  def get_config(self) -> Mapping[str, Any]:
    return {**super().get_config(),
            'res5': tf_keras.utils.serialize_keras_object(self.res5),
            'predictor': tf_keras.utils.serialize_keras_object(self.predictor)}

  @classmethod
  def from_config(cls, config, custom_objects=None):
    config = dict(config)
    for key in ('res5', 'predictor'):
      config[key] = tf_keras.utils.deserialize_keras_object(
          config[key], custom_objects=custom_objects)
    return cls(**config)


@tf_keras.utils.register_keras_serializable(package='tf_mtdet')
class DeconvMaskHead(tf_keras.layers.Layer):
  """`[roi_features [B, N, k, k, C], roi_classes [B, N]]` -> mask logits
  [B, N, 2k, 2k] of each RoI's class (all classes' maps if class-agnostic:
  one map)."""

  def __init__(self, num_classes: int, num_filters: int = 256,
               num_convs: int = 2, class_agnostic: bool = False,
               activation: str = 'relu',
               kernel_regularizer: Optional[
                   tf_keras.regularizers.Regularizer] = None, **kwargs):
    super().__init__(**kwargs)
    self._config_dict = dict(
        num_classes=num_classes, num_filters=num_filters,
        num_convs=num_convs, class_agnostic=class_agnostic,
        activation=activation, kernel_regularizer=kernel_regularizer)
    self._activation = tf_utils.get_activation(activation)
    init = lambda: tf_keras.initializers.VarianceScaling(
        scale=2, mode='fan_out', distribution='untruncated_normal')
    self._convs = [
        tf_keras.layers.Conv2D(num_filters, 3, padding='same',
                               kernel_initializer=init(),
                               kernel_regularizer=kernel_regularizer,
                               name=f'mask-conv-{i}')
        for i in range(num_convs)]
    self._deconv = tf_keras.layers.Conv2DTranspose(
        num_filters, 2, strides=2, kernel_initializer=init(),
        kernel_regularizer=kernel_regularizer, name='mask-upsampling')
    self._regressor = tf_keras.layers.Conv2D(
        1 if class_agnostic else num_classes, 1, kernel_initializer=init(),
        kernel_regularizer=kernel_regularizer, name='mask-classes')

  def call(self, inputs, training=None) -> tf.Tensor:
    del training
    roi_features, roi_classes = inputs
    x, leading = _merge_rois(roi_features)
    for conv in self._convs:
      x = self._activation(conv(x))
    x = self._activation(self._deconv(x))
    logits = self._regressor(x)
    logits = tf.reshape(logits, tf.concat([leading, tf.shape(logits)[1:]], 0))
    if self._config_dict['class_agnostic']:
      return logits[..., 0]
    return tf.gather(logits, tf.cast(roi_classes, tf.int32), axis=-1,
                     batch_dims=2)

  def get_config(self) -> Mapping[str, Any]:
    return {**super().get_config(),
            **layer_config.serialize_regularizer(self._config_dict)}

  @classmethod
  def from_config(cls, config, custom_objects=None):
    return cls(**layer_config.deserialize_regularizer(config))


def _res5(config: two_stage_config.TwoStageModel, l2_regularizer,
          name: str) -> RoIRes5:
  res5, norm = config.res5, config.norm_activation
  # A copy of the backbone's res5 follows its block conventions.
  backbone = (config.backbone.resnext if config.backbone.type == 'resnext'
              else None)
  return RoIRes5(
      filters=res5.filters, num_blocks=res5.num_blocks, strides=res5.strides,
      cardinality=res5.cardinality, bottleneck_width=res5.bottleneck_width,
      stride_in_1x1=bool(backbone and backbone.stride_in_1x1),
      padding=backbone.padding if backbone else 'same',
      frozen_bn=bool(backbone and backbone.frozen_bn),
      use_sync_bn=norm.use_sync_bn, norm_momentum=norm.norm_momentum,
      norm_epsilon=norm.norm_epsilon, activation=norm.activation,
      kernel_regularizer=l2_regularizer, name=name)


def _predictor(config: two_stage_config.TwoStageModel, l2_regularizer
               ) -> PooledBoxPredictor:
  return PooledBoxPredictor(
      config.num_classes,
      class_agnostic_bbox_pred=config.detection_head.class_agnostic_bbox_pred,
      kernel_regularizer=l2_regularizer, name='predictor')


@registry.register('roi_refinement', 'res5')
def build_res5_trunk(config: two_stage_config.TwoStageModel,
                     l2_regularizer=None) -> RoIRes5:
  """DATNet Heavy's res5 shared by the box and mask branches."""
  return _res5(config, l2_regularizer, 'roi_res5')


@registry.register('box_head', 'res5')
def build_res5_box_head(config: two_stage_config.TwoStageModel,
                        l2_regularizer=None,
                        name: str = 'detection_head') -> Res5BoxHead:
  return Res5BoxHead(_res5(config, l2_regularizer, 'res5'),
                     _predictor(config, l2_regularizer), name=name)


@registry.register('box_head', 'avg_pool')
def build_avg_pool_box_head(config: two_stage_config.TwoStageModel,
                            l2_regularizer=None,
                            name: str = 'detection_head'
                            ) -> PooledBoxPredictor:
  """Class and box FCs on average-pooled features (after a shared trunk)."""
  return PooledBoxPredictor(
      config.num_classes,
      class_agnostic_bbox_pred=config.detection_head.class_agnostic_bbox_pred,
      kernel_regularizer=l2_regularizer, name=name)


@registry.register('mask_head', 'conv_deconv')
def build_deconv_mask_head(config: two_stage_config.TwoStageModel,
                           l2_regularizer=None) -> DeconvMaskHead:
  head = config.mask_head
  return DeconvMaskHead(
      config.num_classes, num_filters=head.num_filters,
      num_convs=head.num_convs, class_agnostic=head.class_agnostic,
      activation=config.norm_activation.activation,
      kernel_regularizer=l2_regularizer, name='mask_head')
