"""CoMask's MSFEM and MFPN: branch shapes on odd sizes, channel attention by
hand, the module's output by hand from its branches (fusion, attention,
output conv), each branch reaching the output, the registered neck's
contract and its branch switch."""

import numpy as np
import pytest
import tensorflow as tf

from official.vision.modeling.decoders import factory as decoder_factory
from tf_mtdet.config import two_stage as model_config
from tf_mtdet.modeling import factory  # noqa: F401  # registers the necks
from tf_mtdet.modeling.necks import msfem


@pytest.mark.parametrize('branches', [1, 2, 4])
def test_branch_shapes_on_odd_sizes(branches):
  module = msfem.MSFEM(num_filters=16, branches=branches)
  x = tf.random.normal([2, 25, 13, 16])
  outputs = module.branch_outputs(x)
  # x itself, then one upsampled branch per extra depth.
  assert len(outputs) == branches
  for y in outputs:
    assert y.shape == (2, 25, 13, 16)
  # The deepest branch runs branches - 1 stride-2 convs: 25x13 -> 4x2 for 3.
  depths = [len(convs) for convs in module.branch_convs]
  assert depths == list(range(branches - 1, 0, -1))
  deepest = x
  for conv in module.branch_convs[0] if depths else []:
    deepest = conv(deepest)
  if branches == 4:
    assert deepest.shape == (2, 4, 2, 16)
  out = module(x)
  assert out.shape == (2, 25, 13, 16)
  assert np.all(out.numpy() >= 0.0)  # ReLU(y + GN(conv(y)))


def test_cascade_feeds_each_branch_the_previous_one():
  module = msfem.MSFEM(num_filters=8, branches=4)
  module(tf.zeros([1, 9, 9, 8]))
  # b3 reads x (8 ch); b2 and b1 read concat[previous, x] (16 ch).
  first_kernels = [convs[0].layers[0].kernel.shape[2]
                   for convs in module.branch_convs]
  assert first_kernels == [8, 16, 16]
  assert module.fuse.kernel.shape == (1, 1, 32, 8)


def test_channel_attention_by_hand():
  layer = msfem.ChannelAttention(reduction=2)
  x = np.array([[[[1., 2., 3., 4.], [3., 2., 1., 0.]]]], np.float32)  # 1x1x2x4
  layer(tf.constant(x))
  w1 = np.array([[1., 0.], [0., 1.], [-1., 0.], [0., -1.]], np.float32)
  b1 = np.array([0.5, 0.0], np.float32)
  w2 = np.array([[1., -1., 0., 2.], [0., 1., 1., -1.]], np.float32)
  b2 = np.array([0., 0., -1., 0.], np.float32)
  layer.squeeze.set_weights([w1, b1])
  layer.excite.set_weights([w2, b2])
  gap = x.mean(axis=(1, 2))[0]                       # [2, 2, 2, 2]
  hidden = np.maximum(gap @ w1 + b1, 0.0)            # [0.5, 0] (ReLU)
  scale = 1.0 / (1.0 + np.exp(-(hidden @ w2 + b2)))  # sigmoid
  np.testing.assert_allclose(hidden, [0.5, 0.0])
  expected = x * scale
  np.testing.assert_allclose(layer(tf.constant(x)).numpy(), expected,
                             rtol=1e-6)


def _np_sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


@pytest.mark.parametrize('branches', [1, 4])
def test_msfem_output_by_hand_from_its_branches(branches):
  """Eqns. 2-7: f = conv1x1(concat branches), y = f * sigmoid(FC(ReLU(FC(
  GAP(f))))), out = ReLU(y + GN(conv3x3(y))), the attention weights set so
  that the scale differs by channel."""
  tf.random.set_seed(4)
  module = msfem.MSFEM(num_filters=8, branches=branches, reduction=2)
  x = tf.random.normal([2, 11, 9, 8])
  module(x)
  rng = np.random.default_rng(1)
  for layer in (module.attention.squeeze, module.attention.excite):
    layer.set_weights([rng.normal(0, 1, w.shape).astype(np.float32)
                       for w in layer.get_weights()])
  concat = np.concatenate([b.numpy() for b in module.branch_outputs(x)], -1)
  kernel, bias = module.fuse.get_weights()
  fused = concat @ kernel[0, 0] + bias
  w1, b1 = module.attention.squeeze.get_weights()
  w2, b2 = module.attention.excite.get_weights()
  scale = _np_sigmoid(np.maximum(fused.mean((1, 2)) @ w1 + b1, 0) @ w2 + b2)
  assert scale.std() > 0.05  # the attention is not a constant
  y = fused * scale[:, None, None, :]
  expected = np.maximum(
      y + module.out_norm(module.out_conv(tf.constant(y))).numpy(), 0)
  np.testing.assert_allclose(module(x).numpy(), expected, rtol=1e-4,
                             atol=1e-4)


def test_every_branch_reaches_the_output():
  """Zeroing one branch's first conv changes the branch and the output."""
  tf.random.set_seed(5)
  module = msfem.MSFEM(num_filters=8, branches=4)
  x = tf.random.normal([1, 13, 13, 8])
  reference = module(x).numpy()
  for convs in module.branch_convs:
    kernel = convs[0].layers[0].kernel
    saved = kernel.numpy()
    kernel.assign(tf.zeros_like(kernel))
    changed = np.abs(module(x).numpy() - reference).max()
    kernel.assign(saved)
    assert changed > 1e-3, (convs[0].name, changed)
  np.testing.assert_array_equal(module(x).numpy(), reference)


def test_bad_branch_count_is_rejected():
  with pytest.raises(ValueError, match='branches must be one of'):
    msfem.MSFEM(branches=3)


def test_msfem_fpn_is_a_registered_neck_and_counts_its_branches():
  specs = {str(l): tf.TensorShape([None, 96 // 2**l, 160 // 2**l, c])
           for l, c in zip(range(2, 6), (8, 16, 32, 64))}
  inputs = {k: tf.random.normal([1, *v[1:]]) for k, v in specs.items()}
  params = {}
  for branches in (1, 2, 4):
    config = model_config.TwoStageModel(min_level=2, max_level=6)
    config.decoder.type = 'msfem_fpn'
    config.decoder.msfem_fpn.num_filters = 16
    config.decoder.msfem_fpn.branches = branches
    neck = decoder_factory.build_decoder(specs, config)
    outputs = neck(inputs)
    assert sorted(outputs) == ['2', '3', '4', '5', '6']
    for level in range(2, 7):
      assert outputs[str(level)].shape == (
          1, -(-96 // 2**level), -(-160 // 2**level), 16)
    assert len(neck.msfems) == 5
    params[branches] = sum(int(np.prod(v.shape))
                           for v in neck.trainable_variables)
  f = 16
  conv_gn = 9 * f * f + 2 * f              # stride-2 conv (no bias) + GN
  wide_conv_gn = 9 * 2 * f * f + 2 * f     # on concat[previous, x]
  # 2 branches: +1 conv on x, the 1x1 fuse reads 2F instead of F.
  assert params[2] - params[1] == 5 * (conv_gn + f * f)
  # 4 branches: b3 = 3 convs on x, b2 = 2 convs, b1 = 1 conv (first on 2F).
  extra4 = (3 * conv_gn + (wide_conv_gn + conv_gn) + wide_conv_gn +
            3 * f * f)
  assert params[4] - params[1] == 5 * extra4
