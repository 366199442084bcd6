"""The single-shot model with registered parts (IvaNet and its ablations).

backbone (+ SSD extra levels) -> neck (or none) -> dense head (or none) and
segmentation head (or none). Training returns the heads' raw outputs (the
losses read them); inference decodes the dense head on the SSD priors with
softmax scores and per-class NMS (Model Garden's `DetectionGenerator`) and
adds the semantic class map at the input size. RetinaNet keeps Model
Garden's `RetinaNetModel`.
"""

from typing import Any, Mapping, Optional, Sequence

import tensorflow as tf
import tf_keras

from official.vision.modeling.layers import detection_generator as mg_detgen

from tf_mtdet.modeling import ssd_anchors


class SingleShotModel(tf_keras.Model):
  """Backbone (+ extra levels) -> neck -> dense head + segmentation head.

  Outputs (training): `cls_outputs` / `box_outputs` {level: [B, H_l, W_l,
  A_l * (C | 4)]} with a dense head, `semantic/logits` [B, h, w, K] with a
  segmentation head. Inference adds `detection_boxes` [B, D, 4] (yxyx input
  pixels), `detection_scores`, `detection_classes`, `num_detections`, and
  `semantic` [B, H, W] int32 class ids at the input size.
  """

  def __init__(self,
               backbone: tf_keras.Model,
               decoder: Optional[tf_keras.Model],
               num_classes: int,
               min_level: int = 3,
               max_level: int = 8,
               extra_levels: Optional[tf_keras.Model] = None,
               head: Optional[tf_keras.layers.Layer] = None,
               seg_head: Optional[tf_keras.layers.Layer] = None,
               detection_generator: Optional[
                   mg_detgen.DetectionGenerator] = None,
               anchor_config=None,
               variances: Sequence[float] = (0.1, 0.1, 0.2, 0.2),
               **kwargs):
    """Initializes the model.

    Args:
      backbone: {level: features} pretrained trunk; its levels from
        `min_level` up to the one below the extra levels are used.
      decoder: Neck, or None (features go straight to the heads).
      num_classes: Classes including background.
      min_level: Finest level used.
      max_level: Coarsest level (of the extra levels when there are some).
      extra_levels: Levels continuing from the backbone's coarsest used
        level (`SSDExtraLevels`), or None. A separate attribute, so
        `backbone` stays the pretrained network's object graph.
      head: Dense detection head ('ssd'), or None.
      seg_head: Segmentation head returning {'logits'}, or None.
      detection_generator: Inference decoding and NMS (with `head`).
      anchor_config: `SSDAnchors` of the priors (with `head`).
      variances: Box coder variances of the head's offsets.
      **kwargs: `tf_keras.Model` arguments.
    """
    super().__init__(**kwargs)
    if head is None and seg_head is None:
      raise ValueError('a single-shot model needs a dense head, a '
                       'segmentation head or both')
    self.backbone = backbone
    self.extra_levels = extra_levels
    self.decoder = decoder
    self.head = head
    self.seg_head = seg_head
    self.detection_generator = detection_generator
    self._num_classes = num_classes
    self._min_level = min_level
    self._max_level = max_level
    self._anchor_config = anchor_config
    self._weights = [1.0 / float(v) for v in variances]

  def priors(self, features: Mapping[str, tf.Tensor],
             image_size: tf.Tensor) -> tf.Tensor:
    """[N, 4] priors of the pyramid `features`, levels ascending."""
    # Static sizes where known, so the number of priors is (NMS needs it).
    sizes = {l: (f.shape[1] or tf.shape(f)[1], f.shape[2] or tf.shape(f)[2])
             for l, f in features.items()}
    return ssd_anchors.flatten(
        ssd_anchors.multilevel_anchors(self._anchor_config, sizes, image_size),
        4)

  def trunk_features(self, images: tf.Tensor, training: Optional[bool] = None
                     ) -> dict[str, tf.Tensor]:
    """{level: [B, H_l, W_l, C_l]}: the backbone's levels from `min_level`,
    then the extra levels computed from the last of them."""
    backbone = self.backbone(images, training=training)
    top = (self.extra_levels.input_level if self.extra_levels is not None else
           self._max_level)
    features = {str(l): backbone[str(l)]
                for l in range(self._min_level, top + 1)}
    if self.extra_levels is not None:
      features.update(self.extra_levels(features[str(top)],
                                        training=training))
    return features

  def call(self, images: tf.Tensor, image_shape: Optional[tf.Tensor] = None,
           anchor_boxes: Any = None, training: Optional[bool] = None
           ) -> dict[str, Any]:
    """Runs the model.

    Args:
      images: [B, H, W, 3].
      image_shape: [B, 2] valid image size in the padded input (inference).
      anchor_boxes: Unused (the model makes its priors from its levels).
      training: Training mode.

    Returns:
      See the class docstring.
    """
    del anchor_boxes
    features = self.trunk_features(images, training=training)
    if self.decoder is not None:
      features = self.decoder(features, training=training)
    outputs = {}
    if self.head is not None:
      outputs.update(self.head(features, training=training))
    if self.seg_head is not None:
      outputs['semantic/logits'] = self.seg_head(features,
                                                 training=training)['logits']
    if training:
      return outputs
    input_size = tf.shape(images)[1:3]
    if self.head is not None:
      batch = tf.shape(images)[0]
      if image_shape is None:
        image_shape = tf.tile(tf.cast(input_size, tf.float32)[tf.newaxis],
                              [batch, 1])
      priors = self.priors(features, input_size)
      detections = self.detection_generator(
          tf.cast(ssd_anchors.flatten(outputs['box_outputs'], 4), tf.float32),
          tf.cast(ssd_anchors.flatten(outputs['cls_outputs'],
                                      self._num_classes), tf.float32),
          tf.tile(priors[tf.newaxis], [batch, 1, 1]), image_shape,
          regression_weights=self._weights, bbox_per_class=False)
      outputs.update(detections)
    if self.seg_head is not None:
      logits = tf.image.resize(tf.cast(outputs['semantic/logits'], tf.float32),
                               input_size, method='bilinear')
      outputs['semantic'] = tf.argmax(logits, axis=-1, output_type=tf.int32)
    return outputs

