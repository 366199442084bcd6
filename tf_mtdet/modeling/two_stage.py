"""The two-stage (Mask R-CNN family) meta-architecture.

Model Garden's `MaskRCNNModel` holds every part as a constructor argument
(backbone, neck, RPN, RoI generator, samplers incl. cascade, RoI pooler, box
heads, detection generator, mask sampler/pooler/head). This subclass owns the
call path so that what the papers add travels as arguments, never as state:

  * dense auxiliary heads on the pyramid whose features a fusion module adds
    back into it before the RPN and RoI heads (their raw outputs are returned
    for the losses);
  * a mask RoI assigner (`sampled`: Model Garden's, or `interleaved`: EJ-Head)
    that picks the RoIs and ground-truth matches the mask branch trains on;
  * the RPN proposals at inference (`proposal_boxes`, for recall evaluation);
  * a RoI box refiner (CoMask's collaborative head) between the box stage
    and the mask branch: it adds its loss inputs and hands the mask branch
    its refined boxes (training), or refines `detection_boxes` (inference);
    one that makes the final masks itself sets `detection_masks`, and the
    model is built without a mask head.

Nothing computed in a call is kept on `self`: under MirroredStrategy the
replica threads interleave at every SyncBN merge point, so a stash would be
read by another replica. Model Garden methods still reused (`_run_frcnn_head`,
`_call_mask_outputs`) are pinned by `tests/modeling/test_model_garden_pins.py`.
"""

from typing import Any, Mapping, Optional

import tensorflow as tf
import tf_keras

from official.vision.modeling import maskrcnn_model
from official.vision.ops import anchor
from official.vision.ops import box_ops


@tf_keras.utils.register_keras_serializable(package='tf_mtdet')
class TwoStageModel(maskrcnn_model.MaskRCNNModel):
  """Mask R-CNN family model with dense auxiliary heads and a mask assigner.

  Call contract (Model Garden's): `model(images [B, H, W, 3], image_shape
  [B, 2], anchor_boxes=None, gt_boxes=None, gt_classes=None, gt_masks=None,
  gt_outer_boxes=None, training=...)` returns a dict of raw outputs: RPN
  `rpn_scores`/`rpn_boxes`, per-stage `class_outputs`/`box_outputs` (and
  `class_targets`/`box_targets` in training), mask logits and targets in
  training; at inference `detection_boxes` [B, N, 4] (resized-image pixels),
  `detection_scores`, `detection_classes`, `num_detections`,
  `detection_masks` [B, N, m, m], `proposal_boxes` [B, P, 4] and
  `proposal_scores` [B, P]; plus
  `<head name>/<key>` for each dense auxiliary head's outputs.
  """

  def __init__(self,
               *args,
               dense_aux_heads: Optional[Mapping[str, tf_keras.layers.Layer]] = None,
               feature_fusion: Optional[tf_keras.layers.Layer] = None,
               mask_roi_assigner: Optional[tf_keras.layers.Layer] = None,
               roi_box_refiner: Optional[tf_keras.layers.Layer] = None,
               **kwargs):
    """Initializes the model.

    Args:
      *args: Model Garden `MaskRCNNModel` arguments.
      dense_aux_heads: Name -> layer mapping the pyramid to a dict of outputs.
      feature_fusion: Layer `(features, {name: outputs}) -> features`; needs
        `dense_aux_heads`.
      mask_roi_assigner: Layer choosing the mask branch's training RoIs and
        their ground-truth matches (None: the last box stage's sampled RoIs,
        as Model Garden does).
      roi_box_refiner: Layer `(features, outputs, matches, image_shape,
        gt_masks, training) -> (outputs, matches)` run after the box stage.
      **kwargs: Model Garden `MaskRCNNModel` keyword arguments.
    """
    super().__init__(*args, **kwargs)
    self.dense_aux_heads = dict(dense_aux_heads or {})
    if feature_fusion is not None and not self.dense_aux_heads:
      raise ValueError('feature_fusion needs dense_aux_heads to fuse')
    self.feature_fusion = feature_fusion
    self.mask_roi_assigner = mask_roi_assigner
    self._config_dict.update(dense_aux_heads=self.dense_aux_heads,
                             feature_fusion=feature_fusion,
                             mask_roi_assigner=mask_roi_assigner)
    self.roi_box_refiner = roi_box_refiner
    self._config_dict.update(roi_box_refiner=roi_box_refiner)

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
    backbone_features = self.backbone(images)
    features = (self.decoder(backbone_features) if self.decoder else
                backbone_features)
    aux = {name: head(features) for name, head in self.dense_aux_heads.items()}
    if self.feature_fusion is not None:
      features = self.feature_fusion(features, aux)

    outputs, matches = self._box_outputs(
        features, images, image_shape, anchor_boxes, gt_boxes, gt_classes,
        gt_outer_boxes, training)
    if self.roi_box_refiner is not None:
      outputs, matches = self.roi_box_refiner(
          features, outputs, matches, image_shape, gt_masks=gt_masks,
          training=training)
    outputs.update(backbone_features=backbone_features,
                   decoder_features=features)
    if self._include_mask:
      outputs = dict(self._mask_outputs(outputs, features, matches, image_shape,
                                        gt_boxes, gt_classes, gt_masks,
                                        training))
    outputs.update({f'{name}/{key}': value
                    for name, head_outputs in aux.items()
                    for key, value in head_outputs.items()})
    return outputs

  def _box_outputs(self, features, images, image_shape, anchor_boxes,
                   gt_boxes, gt_classes, gt_outer_boxes, training):
    """RPN, RoI generation and the (cascade) box stages on `features`.

    Returns:
      outputs: RPN outputs, per-stage box outputs (targets in training),
        detections and `proposal_boxes` at inference.
      matches: The last stage's `rois` [B, N, 4] and their ground-truth
        `matched_gt_boxes` (or outer boxes), `matched_gt_classes`,
        `matched_gt_indices` (training only), for the mask branch.
    """
    rpn_scores, rpn_boxes = self.rpn_head(features)
    outputs = {'rpn_scores': rpn_scores, 'rpn_boxes': rpn_boxes}
    if anchor_boxes is None:
      anchor_boxes = self._anchors_for(images)
    rois, roi_scores = self.roi_generator(rpn_boxes, rpn_scores, anchor_boxes,
                                          image_shape, training)
    if not training:
      outputs.update(proposal_boxes=rois, proposal_scores=roi_scores)

    outer = self.outer_boxes_scale > 1.0
    extra = {'gt_outer_boxes': gt_outer_boxes} if outer else {}
    stage_class_outputs = []
    num_stages = len(self.roi_sampler)
    for stage in range(num_stages):
      weights = self._cascade_layer_to_weights[stage]
      (class_outputs, box_outputs, outputs, matched_boxes, matched_classes,
       matched_indices, rois) = self._run_frcnn_head(
           features=features, rois=rois, gt_boxes=gt_boxes,
           gt_classes=gt_classes, training=training, model_outputs=outputs,
           cascade_num=stage, regression_weights=weights, **extra)
      stage_class_outputs.append(class_outputs)
      if stage < num_stages - 1:
        next_rois = box_ops.decode_boxes(tf.cast(box_outputs, tf.float32),
                                         rois, weights=weights)
        rois = box_ops.clip_boxes(next_rois, image_shape[:, tf.newaxis, :])

    matches = {'rois': rois, 'regression_weights': weights,
               'box_outputs': box_outputs, 'class_outputs': class_outputs}
    if training:
      if outer:
        matched_boxes = matched_boxes[0]  # (boxes, outer boxes)
      matches.update(matched_gt_boxes=matched_boxes,
                     matched_gt_classes=matched_classes,
                     matched_gt_indices=matched_indices)
      return outputs, matches

    if self._config_dict['cascade_class_ensemble']:
      class_outputs = tf.add_n(stage_class_outputs) / num_stages
    detections = self.detection_generator(
        box_outputs, class_outputs, rois, image_shape, weights,
        bbox_per_class=not self._config_dict['class_agnostic_bbox_pred'])
    outputs.update(cls_outputs=class_outputs, box_outputs=box_outputs)
    if not self.detection_generator.get_config()['apply_nms']:
      outputs.update(decoded_boxes=detections['decoded_boxes'],
                     decoded_box_scores=detections['decoded_box_scores'])
      return outputs, matches
    outputs.update({key: detections[key] for key in (
        'detection_boxes', 'detection_scores', 'detection_classes',
        'num_detections')})
    if outer:
      outputs['detection_outer_boxes'] = box_ops.compute_outer_boxes(
          detections['detection_boxes'], image_shape[:, tf.newaxis, :],
          self.outer_boxes_scale)
    return outputs, matches

  def _anchors_for(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
    """Multilevel anchors [B, H_l, W_l, 4A] for the (static) image size."""
    _, height, width, _ = images.get_shape().as_list()
    boxes = anchor.Anchor(
        min_level=self._config_dict['min_level'],
        max_level=self._config_dict['max_level'],
        num_scales=self._config_dict['num_scales'],
        aspect_ratios=self._config_dict['aspect_ratios'],
        anchor_size=self._config_dict['anchor_size'],
        image_size=(height, width)).multilevel_boxes
    batch = tf.shape(images)[0]
    return {level: tf.tile(value[tf.newaxis], [batch, 1, 1, 1])
            for level, value in boxes.items()}

  def _mask_outputs(self, outputs, features, matches, image_shape, gt_boxes,
                    gt_classes, gt_masks, training):
    """The mask branch: training RoIs from the assigner, then Model Garden's
    mask sampler, pooler and head."""
    rois = matches['rois']
    if training:
      if self.mask_roi_assigner is not None:
        assigned = self.mask_roi_assigner(
            rois=rois, roi_classes=matches['matched_gt_classes'],
            box_outputs=matches['box_outputs'],
            class_outputs=matches['class_outputs'], image_shape=image_shape,
            gt_boxes=gt_boxes, gt_classes=gt_classes,
            regression_weights=matches['regression_weights'],
            class_agnostic=self._config_dict['class_agnostic_bbox_pred'])
        matches = {**matches, **assigned}
        rois = matches['rois']
      matched_boxes = matches['matched_gt_boxes']
      if self.outer_boxes_scale > 1.0:
        # The parser's gt_outer_boxes are these outer boxes of the ground
        # truth, so computing them from the matches holds for any assigner.
        to_outer = lambda b: box_ops.compute_outer_boxes(
            b, image_shape[:, tf.newaxis, :], self.outer_boxes_scale)
        rois, matched_boxes = to_outer(rois), to_outer(matched_boxes)
      return self._call_mask_outputs(
          model_box_outputs=outputs, features=features, current_rois=rois,
          matched_gt_indices=matches['matched_gt_indices'],
          matched_gt_boxes=matched_boxes,
          matched_gt_classes=matches['matched_gt_classes'],
          gt_masks=gt_masks, training=True)
    return self._call_mask_outputs(
        model_box_outputs=outputs, features=features, current_rois=rois,
        matched_gt_indices=None, matched_gt_boxes=None,
        matched_gt_classes=None, gt_masks=None, training=False)

  @property
  def checkpoint_items(self):
    items = dict(super().checkpoint_items)
    items.update({f'dense_aux_head/{n}': h
                  for n, h in self.dense_aux_heads.items()})
    if self.roi_box_refiner is not None:
      items['roi_box_refiner'] = self.roi_box_refiner
    return items
