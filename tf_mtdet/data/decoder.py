"""tf.Example decoder: Model Garden's, plus the semantic class PNG and VOC flags."""

import tensorflow as tf

from official.vision.dataloaders import tf_example_decoder

SEMANTIC_KEY = 'image/segmentation/class/encoded'
MASK_KEY = 'image/object/mask'


def paint_semantic(masks: tf.Tensor, classes: tf.Tensor) -> tf.Tensor:
  """Class map of instance masks, the later instance over the earlier.

  Args:
    masks: [N, H, W] instance masks (a value above 0.5 is inside; PNG masks
      decoded as 0/1 or 0/255 both work).
    classes: [N] int class ids.

  Returns:
    [H, W] uint8: the class of the last instance covering each pixel, 0
    where none does.
  """
  n = tf.shape(masks)[0]
  order = tf.range(1, n + 1, dtype=tf.int32)[:, tf.newaxis, tf.newaxis]
  # With no instance reduce_max gives the lowest int32: clamp to 0.
  owner = tf.maximum(tf.reduce_max(
      tf.where(masks > 0.5, order, tf.zeros_like(order)), axis=0), 0)
  labels = tf.gather(tf.concat([[0], tf.cast(classes, tf.int32)], 0), owner)
  return tf.cast(tf.clip_by_value(labels, 0, 255), tf.uint8)


class TfExampleDecoder(tf_example_decoder.TfExampleDecoder):
  """Decodes our shards (Model Garden keys) into Model Garden's tensor dict.

  Adds, when asked:
    groundtruth_semantic: [height, width] uint8 class map: the builder's
      (`--semantic`); for an example built without one, painted from its
      instance masks as the builder paints it (class ids in record order,
      later over earlier, crowd included, 0 elsewhere); all `ignore_label`
      if it has neither (or fewer masks than instances).
    groundtruth_difficult: [num_instances] bool VOC flag (all False if absent).
  """

  def __init__(self, include_mask: bool = False, include_semantic: bool = False,
               include_difficult: bool = True, ignore_label: int = 255,
               **kwargs):
    attribute_names = list(kwargs.pop('attribute_names', None) or [])
    if include_difficult and 'difficult' not in attribute_names:
      attribute_names.append('difficult')
    super().__init__(include_mask=include_mask,
                     attribute_names=attribute_names, **kwargs)
    self._include_semantic = include_semantic
    self._include_difficult = include_difficult
    self._ignore_label = ignore_label
    # Parsed on its own: Model Garden's decode() drops keys it does not know.
    self._semantic_features = {
        SEMANTIC_KEY: tf.io.FixedLenFeature((), tf.string, default_value='')}
    if not include_mask:  # else Model Garden's decode() has the masks
      self._semantic_features[MASK_KEY] = tf.io.VarLenFeature(tf.string)

  def decode(self, serialized_example):
    decoded = super().decode(serialized_example)
    if self._include_difficult:
      difficult = decoded.pop('groundtruth_attributes')['difficult'][:, 0]
      num = tf.shape(decoded['groundtruth_classes'])[0]
      # Examples written without the flag decode to an empty list.
      decoded['groundtruth_difficult'] = tf.cond(
          tf.equal(tf.size(difficult), num),
          lambda: tf.cast(difficult, tf.bool),
          lambda: tf.zeros([num], tf.bool))
    if self._include_semantic:
      parsed = tf.io.parse_single_example(serialized_example,
                                          self._semantic_features)
      encoded = parsed[SEMANTIC_KEY]
      shape = tf.shape(decoded['image'])[:2]
      classes = decoded['groundtruth_classes']
      ignore = lambda: tf.fill(shape, tf.constant(self._ignore_label,
                                                  tf.uint8))

      def from_masks():
        # Decoded here only when the map is missing (PNG decoding per
        # instance is the cost), unless the model decodes them anyway.
        if self._include_mask:
          masks = decoded['groundtruth_instance_masks']
        else:
          masks = self._decode_masks({
              'image/height': shape[0], 'image/width': shape[1],
              MASK_KEY: tf.sparse.to_dense(parsed[MASK_KEY])})
        return tf.cond(
            tf.equal(tf.shape(masks)[0], tf.shape(classes)[0]),
            lambda: paint_semantic(masks, classes), ignore)

      decoded['groundtruth_semantic'] = tf.cond(
          tf.strings.length(encoded) > 0,
          lambda: tf.io.decode_png(encoded, channels=1)[:, :, 0],
          from_masks)
      decoded['groundtruth_semantic'].set_shape([None, None])
    return decoded
