"""Model Garden's standard parts, registered under their config names.

'fc' box head and 'fcn' mask head are Model Garden's `DetectionHead` and
`MaskHead`; 'level_assigned' is its `MultilevelROIAligner` (RoIAlign on the FPN
level the box size assigns, FPN eq. 1).
"""

from typing import Optional

import tf_keras

from official.vision.modeling.heads import instance_heads
from official.vision.modeling.layers import roi_aligner

from tf_mtdet.config import model as model_config
from tf_mtdet.modeling import registry


@registry.register('box_head', 'fc')
def build_fc_box_head(config: model_config.TwoStageModel,
                      l2_regularizer: Optional[tf_keras.regularizers.Regularizer],
                      name: str = 'detection_head') -> tf_keras.layers.Layer:
  head, norm = config.detection_head, config.norm_activation
  return instance_heads.DetectionHead(
      num_classes=config.num_classes, num_convs=head.num_convs,
      num_filters=head.num_filters, use_separable_conv=head.use_separable_conv,
      num_fcs=head.num_fcs, fc_dims=head.fc_dims,
      class_agnostic_bbox_pred=head.class_agnostic_bbox_pred,
      activation=norm.activation, use_sync_bn=norm.use_sync_bn,
      norm_momentum=norm.norm_momentum, norm_epsilon=norm.norm_epsilon,
      kernel_regularizer=l2_regularizer, name=name)


@registry.register('mask_head', 'fcn')
def build_fcn_mask_head(config: model_config.TwoStageModel,
                        l2_regularizer: Optional[tf_keras.regularizers.Regularizer]
                        ) -> tf_keras.layers.Layer:
  head, norm = config.mask_head, config.norm_activation
  return instance_heads.MaskHead(
      num_classes=config.num_classes, upsample_factor=head.upsample_factor,
      num_convs=head.num_convs, num_filters=head.num_filters,
      use_separable_conv=head.use_separable_conv, activation=norm.activation,
      norm_momentum=norm.norm_momentum, norm_epsilon=norm.norm_epsilon,
      kernel_regularizer=l2_regularizer, class_agnostic=head.class_agnostic)


@registry.register('roi_pooler', 'level_assigned')
def build_level_assigned_pooler(config: model_config.TwoStageModel,
                                l2_regularizer=None) -> tf_keras.layers.Layer:
  del l2_regularizer  # no weights
  return roi_aligner.MultilevelROIAligner(
      crop_size=config.roi_aligner.crop_size,
      sample_offset=config.roi_aligner.sample_offset)


@registry.register('mask_roi_pooler', 'level_assigned')
def build_level_assigned_mask_pooler(config: model_config.TwoStageModel,
                                     l2_regularizer=None
                                     ) -> tf_keras.layers.Layer:
  del l2_regularizer  # no weights
  return roi_aligner.MultilevelROIAligner(
      crop_size=config.mask_roi_aligner.crop_size,
      sample_offset=config.mask_roi_aligner.sample_offset)
