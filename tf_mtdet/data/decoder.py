"""tf.Example decoder: Model Garden's, plus the semantic class PNG and VOC flags."""

import tensorflow as tf

from official.vision.dataloaders import tf_example_decoder

SEMANTIC_KEY = 'image/segmentation/class/encoded'


class TfExampleDecoder(tf_example_decoder.TfExampleDecoder):
  """Decodes our shards (Model Garden keys) into Model Garden's tensor dict.

  Adds, when asked:
    groundtruth_semantic: [height, width] uint8 class map (`--semantic`); all
      `ignore_label` if the example has none.
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
      encoded = tf.io.parse_single_example(
          serialized_example, self._semantic_features)[SEMANTIC_KEY]
      shape = tf.shape(decoded['image'])[:2]
      decoded['groundtruth_semantic'] = tf.cond(
          tf.strings.length(encoded) > 0,
          lambda: tf.io.decode_png(encoded, channels=1)[:, :, 0],
          lambda: tf.fill(shape, tf.constant(self._ignore_label, tf.uint8)))
      decoded['groundtruth_semantic'].set_shape([None, None])
    return decoded
