"""DATNet's binned distance-transform target against hand-computed cases."""

import numpy as np
import pytest
import tensorflow as tf

from tf_mtdet.data.targets import distance_transform

# Two overlapping instances on a 10 x 12 image. A: rows 0-8, cols 0-8 (9x9,
# touching the top/left image border, which counts as its boundary), so its
# distance to the boundary is ring + 1 for rings 0..4, max 5: normalised 0.2,
# 0.4, 0.6, 0.8, 1.0 -> bins 1 (0.2 is the first edge, inclusive), 2 (0.4,
# inclusive), 3, 3, 3. B: rows 6-8, cols 7-9 (3x3): 1/2 on its ring, 1 at its
# centre -> bin 3 everywhere; where it overlaps A's outer rings the max over
# instances (0.5) wins.
EXPECTED = np.array([
    [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
    [1, 2, 2, 2, 2, 2, 2, 2, 1, 0, 0, 0],
    [1, 2, 3, 3, 3, 3, 3, 2, 1, 0, 0, 0],
    [1, 2, 3, 3, 3, 3, 3, 2, 1, 0, 0, 0],
    [1, 2, 3, 3, 3, 3, 3, 2, 1, 0, 0, 0],
    [1, 2, 3, 3, 3, 3, 3, 2, 1, 0, 0, 0],
    [1, 2, 3, 3, 3, 3, 3, 3, 3, 3, 0, 0],
    [1, 2, 2, 2, 2, 2, 2, 3, 3, 3, 0, 0],
    [1, 1, 1, 1, 1, 1, 1, 3, 3, 3, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
])


def _two_instances():
  masks = np.zeros((2, 10, 12), np.float32)
  masks[0, 0:9, 0:9] = 1
  masks[1, 6:9, 7:10] = 1
  return masks


def test_two_overlapping_instances_bins_at_the_edges():
  got = distance_transform.binned_distance_transform(_two_instances(),
                                                     [0.2, 0.4])
  np.testing.assert_array_equal(got, EXPECTED)


def test_no_instances_is_all_background():
  got = distance_transform.binned_distance_transform(
      np.zeros((0, 4, 5), np.float32), [0.2, 0.4])
  np.testing.assert_array_equal(got, np.zeros((4, 5)))


def test_generator_at_stride_two_marks_padding_ignored():
  # Original 20 x 24 masks, scale 0.5 -> 10 x 12 resized, padded to 16 x 16:
  # at stride 1 the target is EXPECTED inside, the ignore label outside.
  masks = np.kron(_two_instances(), np.ones((2, 2), np.float32))  # 20 x 24
  example = {
      'image': tf.zeros([16, 16, 3]),
      'image_info': tf.constant([[20, 24], [10, 12], [0.5, 0.5], [0, 0]],
                                tf.float32),
      'masks': tf.constant(masks),
  }
  gen = distance_transform.DistanceTransformTargets(stride=1)
  assert gen.num_bins == 4
  got = gen.train(example)['gt_distance_transform'].numpy()
  assert got.shape == (16, 16)
  np.testing.assert_array_equal(got[:10, :12], EXPECTED)
  assert (got[10:, :] == 255).all() and (got[:, 12:] == 255).all()

  # Stride 2: 8 x 8 target, 5 x 6 of it inside the image.
  got = distance_transform.DistanceTransformTargets(stride=2).train(
      example)['gt_distance_transform'].numpy()
  assert got.shape == (8, 8)
  assert (got[5:, :] == 255).all() and (got[:, 6:] == 255).all()
  assert set(np.unique(got[:5, :6])) <= {0, 1, 2, 3}
  assert got[2, 2] == 3 and got[4, 0] == 0


@pytest.mark.parametrize('edges', [[], [0.4, 0.2], [0.0, 0.4], [0.2, 1.0]])
def test_bad_bin_edges_raise(edges):
  with pytest.raises(ValueError, match='bin_edges'):
    distance_transform.DistanceTransformTargets(4, edges)
