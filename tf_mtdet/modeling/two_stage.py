"""The two-stage (Mask R-CNN family) meta-architecture.

Model Garden's `MaskRCNNModel` runs backbone -> neck -> RPN -> RoI generator ->
(sampler) -> RoI pooler -> box head [-> cascade stages] -> detection generator,
and the mask branch on sampled positives (training) or detections (inference).
Every part is a constructor argument, so necks, poolers and heads plug in
unchanged. This subclass adds the one seam it lacks: dense auxiliary heads on
the pyramid whose features a fusion module adds back into it before the RoI
heads, with their raw outputs returned for the losses.
"""

from typing import Any, Mapping, Optional

import tensorflow as tf
import tf_keras

from official.vision.modeling import maskrcnn_model

from tf_mtdet.modeling.heads import interleaving as interleaving_lib


@tf_keras.utils.register_keras_serializable(package='tf_mtdet')
class TwoStageModel(maskrcnn_model.MaskRCNNModel):
  """Mask R-CNN family model with optional dense auxiliary heads.

  Call contract (Model Garden's): `model(images [B, H, W, 3], image_shape
  [B, 2], anchor_boxes=None, gt_boxes=None, gt_classes=None, gt_masks=None,
  training=...)` returns a dict of raw outputs: RPN `rpn_scores`/`rpn_boxes`,
  per-stage `class_outputs`/`box_outputs` (and targets in training), mask
  logits and targets in training; `detection_boxes` [B, N, 4] (resized-image
  pixels), `detection_scores`, `detection_classes`, `num_detections`,
  `detection_masks` [B, N, m, m] at inference; plus `<head name>/<key>` for
  each dense auxiliary head's outputs.
  """

  def __init__(self,
               *args,
               dense_aux_heads: Optional[Mapping[str, tf_keras.layers.Layer]] = None,
               feature_fusion: Optional[tf_keras.layers.Layer] = None,
               interleaving: bool = False,
               interleaving_iou: float = 0.5,
               **kwargs):
    """Initializes the model.

    Args:
      *args: Model Garden `MaskRCNNModel` arguments.
      dense_aux_heads: Name -> layer mapping the pyramid to a dict of outputs.
      feature_fusion: Layer `(features, {name: outputs}) -> features`; needs
        `dense_aux_heads`.
      interleaving: EJ-Head Interleaving: in training the mask branch gets the
        last box stage's refined boxes re-matched to ground truth.
      interleaving_iou: IoU for a refined box to be a mask positive.
      **kwargs: Model Garden `MaskRCNNModel` keyword arguments.
    """
    super().__init__(*args, **kwargs)
    self.dense_aux_heads = dict(dense_aux_heads or {})
    if feature_fusion is not None and not self.dense_aux_heads:
      raise ValueError('feature_fusion needs dense_aux_heads to fuse')
    self.feature_fusion = feature_fusion
    self._config_dict.update(dense_aux_heads=self.dense_aux_heads,
                             feature_fusion=feature_fusion,
                             interleaving=interleaving,
                             interleaving_iou=interleaving_iou)
    self._aux_outputs: dict[str, Any] = {}
    self._groundtruth: tuple[Any, ...] = ()

  def _get_backbone_and_decoder_features(self, images):
    backbone_features, features = super()._get_backbone_and_decoder_features(
        images)
    aux = {name: head(features) for name, head in self.dense_aux_heads.items()}
    if self.feature_fusion is not None:
      features = self.feature_fusion(features, aux)
    # Handed to `call` within the same trace; Model Garden's box path only
    # passes the pyramid on.
    self._aux_outputs = {f'{name}/{key}': value
                         for name, outputs in aux.items()
                         for key, value in outputs.items()}
    return backbone_features, features

  def call(self,
           images: tf.Tensor,
           image_shape: tf.Tensor,
           anchor_boxes: Optional[Mapping[str, tf.Tensor]] = None,
           gt_boxes: Optional[tf.Tensor] = None,
           gt_classes: Optional[tf.Tensor] = None,
           gt_masks: Optional[tf.Tensor] = None,
           gt_outer_boxes: Optional[tf.Tensor] = None,
           training: Optional[bool] = None) -> Mapping[str, Any]:
    # Targets need ground truth. Keras traces call(training=True) without it
    # when a built model is saved (SavedModel export); that is inference.
    if gt_boxes is None:
      training = False
    # For interleaving, within the same trace (Model Garden's mask path only
    # receives the sampler's matches).
    self._groundtruth = (gt_boxes, gt_classes, image_shape)
    outputs = dict(super().call(
        images, image_shape, anchor_boxes=anchor_boxes, gt_boxes=gt_boxes,
        gt_classes=gt_classes, gt_masks=gt_masks,
        gt_outer_boxes=gt_outer_boxes, training=training))
    outputs.update(self._aux_outputs)
    self._aux_outputs, self._groundtruth = {}, ()
    return outputs

  def _call_mask_outputs(self, model_box_outputs, features, current_rois,
                         matched_gt_indices, matched_gt_boxes,
                         matched_gt_classes, gt_masks, training=None):
    if training and self._config_dict['interleaving']:
      gt_boxes, gt_classes, image_shape = self._groundtruth
      stage = len(self.roi_sampler) - 1
      suffix = f'_{stage}' if stage else ''
      current_rois = interleaving_lib.refine_boxes(
          model_box_outputs['box_outputs' + suffix],
          model_box_outputs['class_outputs' + suffix], current_rois,
          image_shape, self._cascade_layer_to_weights[stage],
          self._config_dict['class_agnostic_bbox_pred'])
      matched_gt_boxes, matched_gt_classes, matched_gt_indices = (
          interleaving_lib.match_to_groundtruth(
              current_rois, gt_boxes, gt_classes,
              self._config_dict['interleaving_iou']))
    return super()._call_mask_outputs(
        model_box_outputs, features, current_rois, matched_gt_indices,
        matched_gt_boxes, matched_gt_classes, gt_masks, training=training)

  @property
  def checkpoint_items(self):
    items = dict(super().checkpoint_items)
    items.update({f'dense_aux_head/{n}': h
                  for n, h in self.dense_aux_heads.items()})
    return items
