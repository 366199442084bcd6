"""`semantic_map`: the model's class map at the padded input size mapped
back to original-image pixels (nearest), batch padding zero."""

import numpy as np
import tensorflow as tf

from tf_mtdet.serving import export


def test_semantic_map_back_to_original_pixels():
  # Image 0: 2x3 original scaled x2 into a 4x6 region of a 4x6 input.
  # Image 1: 4x2 original scaled x1 (top-left of the input).
  labels = np.arange(24, dtype=np.int32).reshape(4, 6)
  semantic = tf.constant(np.stack([labels, labels + 100]))
  info = tf.constant([[[2., 3.], [4., 6.], [2., 2.], [0., 0.]],
                      [[4., 2.], [4., 2.], [1., 1.], [0., 0.]]])
  out = export.semantic_at_original_size(semantic, info).numpy()
  assert out.dtype == np.uint8 and out.shape == (2, 4, 3)
  # Original pixel centres (r + 0.5) * 2 -> input rows 1, 3; cols 1, 3, 5.
  np.testing.assert_array_equal(out[0, :2], labels[[1, 3]][:, [1, 3, 5]])
  assert (out[0, 2:] == 0).all()  # below image 0: batch padding
  np.testing.assert_array_equal(out[1, :, :2], labels[:, :2] + 100)
  assert (out[1, :, 2] == 0).all()
