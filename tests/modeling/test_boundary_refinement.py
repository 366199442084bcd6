"""Boundary Refinement variants (Table 5)."""

import numpy as np
import pytest
import tensorflow as tf

from tf_mtdet.modeling.heads import boundary_refinement as br


def _features(shape=(2, 3, 7, 7, 8)):
  return tf.constant(np.random.default_rng(0).normal(size=shape), tf.float32)


def test_residual_with_zero_second_conv_is_identity():
  x = _features()
  block = br.BoundaryRefinement('residual', zero_init_last=True)
  np.testing.assert_allclose(block(x).numpy(), x.numpy(), atol=0)
  # Once the second conv is non-zero the block is no longer the identity.
  kernel, bias = block._convs[1].get_weights()  # pylint: disable=protected-access
  block._convs[1].set_weights([kernel + 0.1, bias])  # pylint: disable=protected-access
  assert not np.allclose(block(x).numpy(), x.numpy())


@pytest.mark.parametrize('variant,convs', [('none', 0), ('conv1', 1),
                                           ('conv2', 2), ('conv3', 3),
                                           ('residual', 2)])
def test_variants_keep_shape_and_count_convs(variant, convs):
  x = _features()
  block = br.BoundaryRefinement(variant)
  y = block(x)
  assert y.shape == x.shape
  assert len(block._convs) == convs  # pylint: disable=protected-access
  assert len(block.trainable_weights) == 2 * convs
  clone = br.BoundaryRefinement.from_config(block.get_config())
  assert clone.get_config()['variant'] == variant


def test_residual_is_input_plus_two_convs_by_hand():
  x = _features((1, 1, 5, 5, 2))
  block = br.BoundaryRefinement('residual')
  block(x)
  for conv in block._convs:  # pylint: disable=protected-access
    kernel = np.zeros(conv.kernel.shape, np.float32)
    kernel[1, 1] = np.eye(2) * 2.0  # centre tap: multiply by 2
    conv.set_weights([kernel, np.full(conv.bias.shape, -0.5, np.float32)])
  expected = x.numpy() + (2 * np.maximum(2 * x.numpy() - 0.5, 0) - 0.5)
  np.testing.assert_allclose(block(x).numpy(), expected, rtol=1e-6)
  with pytest.raises(ValueError, match='variant'):
    br.BoundaryRefinement('conv4')


@pytest.mark.parametrize('variant,depth', [('conv1', 1), ('conv2', 2),
                                           ('conv3', 3)])
def test_stacked_variants_by_hand(variant, depth):
  """Each conv multiplies by 2 at the centre tap and adds -0.5, then ReLU:
  conv_n applies relu(2x - 0.5) n times."""
  x = _features((1, 2, 5, 5, 2))
  block = br.BoundaryRefinement(variant)
  block(x)
  for conv in block._convs:  # pylint: disable=protected-access
    kernel = np.zeros(conv.kernel.shape, np.float32)
    kernel[1, 1] = np.eye(2) * 2.0
    conv.set_weights([kernel, np.full(conv.bias.shape, -0.5, np.float32)])
  expected = x.numpy()
  for _ in range(depth):
    expected = np.maximum(2 * expected - 0.5, 0)
  np.testing.assert_allclose(block(x).numpy(), expected, rtol=1e-6)


@pytest.mark.parametrize('variant,reach', [('conv1', 1), ('conv2', 2),
                                           ('conv3', 3), ('residual', 2)])
def test_receptive_field_grows_one_pixel_per_conv(variant, reach):
  """An impulse at the centre of a 9x9 RoI reaches `reach` pixels out with
  all-positive kernels: 3x3, 5x5, 7x7 for conv1/2/3."""
  x = np.zeros((1, 1, 9, 9, 1), np.float32)
  x[0, 0, 4, 4] = 1.0
  block = br.BoundaryRefinement(variant)
  block(tf.constant(x))
  for conv in block._convs:  # pylint: disable=protected-access
    conv.set_weights([np.ones(conv.kernel.shape, np.float32),
                      np.zeros(conv.bias.shape, np.float32)])
  rows, cols = np.nonzero(block(tf.constant(x)).numpy()[0, 0, :, :, 0])
  assert (rows.min(), rows.max(), cols.min(), cols.max()) == (
      4 - reach, 4 + reach, 4 - reach, 4 + reach)
