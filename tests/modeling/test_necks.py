"""SA-FPN paper necks: contracts, gradients, and the BU/BUF difference."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from tf_mtdet.config import two_stage as model_config
from tf_mtdet.modeling import factory
from tf_mtdet.modeling.necks import bottom_up_fpn
from tf_mtdet.modeling.necks import sa_fpn

# A non-square 128x192 image: backbone levels 2..5.
H, W = 128, 192


def _specs(channels=(8, 16, 32, 64)):
  return {str(l): tf.TensorShape([None, H // 2**l, W // 2**l, c])
          for l, c in zip(range(2, 6), channels)}


def _inputs(specs, seed=0):
  rng = np.random.default_rng(seed)
  return {k: tf.constant(rng.normal(size=[1, *v[1:]]).astype(np.float32))
          for k, v in specs.items()}


@pytest.mark.parametrize('neck', ['fpn', 'bu_fpn', 'buf_fpn', 'td_add_buf_fpn',
                                  'sa_fpn'])
def test_neck_output_contract_non_square(neck):
  config = model_config.TwoStageModel(min_level=2, max_level=6)
  if neck == 'buf_fpn':
    config.decoder.type, config.decoder.bu_fpn.fuse_deeper = 'bu_fpn', True
  elif neck == 'td_add_buf_fpn':
    config.decoder.type, config.decoder.sa_fpn.fusion = 'sa_fpn', 'add'
  else:
    config.decoder.type = neck
  for n in ('fpn', 'bu_fpn', 'sa_fpn'):
    getattr(config.decoder, n).num_filters = 32
  from official.vision.modeling.decoders import factory as decoder_factory  # pylint: disable=g-import-not-at-top
  specs = _specs()
  layer = decoder_factory.build_decoder(specs, config)
  outputs = layer(_inputs(specs))
  assert sorted(outputs) == ['2', '3', '4', '5', '6']
  for level in range(2, 7):
    assert outputs[str(level)].shape == (1, H // 2**level, W // 2**level, 32)


def test_sa_fpn_gradient_reaches_both_paths():
  specs = _specs()
  neck = sa_fpn.ScaleAwareFPN(specs, num_filters=16)
  inputs = _inputs(specs)
  with tf.GradientTape() as tape:
    loss = tf.add_n([tf.reduce_sum(v**2) for v in neck(inputs).values()])
  variables = (neck.top_down.trainable_variables +
               neck.bottom_up.trainable_variables)
  grads = tape.gradient(loss, variables)
  td = grads[:len(neck.top_down.trainable_variables)]
  bu = grads[len(neck.top_down.trainable_variables):]
  assert td and bu
  assert all(g is not None and float(tf.reduce_sum(tf.abs(g))) > 0
             for g in td + bu)


def _identity_weights(neck: bottom_up_fpn.BottomUpFPN, channels: int):
  """Laterals and output convs become identities, downsampling convs pick the
  top-left tap: B_l = N_l + B_{l-1}[::2, ::2] (+ up2(N_{l+1}))."""
  for layer in neck.layers:
    if not isinstance(layer, tf_keras.layers.Conv2D):
      continue
    kernel, bias = layer.get_weights()
    kernel = np.zeros_like(kernel)
    k = kernel.shape[0]
    center = k // 2
    tap = (center, center) if not layer.name.startswith('down') else (0, 0)
    for c in range(min(kernel.shape[2], kernel.shape[3])):
      kernel[tap[0], tap[1], c, c] = 1.0
    layer.set_weights([kernel, np.zeros_like(bias)])


def test_bu_and_buf_differ_exactly_in_the_deeper_neighbour():
  channels = 4
  specs = {str(l): tf.TensorShape([None, 16 // 2**(l - 2), 16 // 2**(l - 2),
                                   channels]) for l in range(2, 5)}
  rng = np.random.default_rng(1)
  c = {k: rng.integers(-3, 4, size=[1, *v[1:]]).astype(np.float32)
       for k, v in specs.items()}
  outs = {}
  for fuse_deeper in (False, True):
    neck = bottom_up_fpn.BottomUpFPN(
        specs, min_level=2, max_level=5, num_filters=channels,
        fuse_deeper=fuse_deeper, use_norm=False, activation='linear')
    _identity_weights(neck, channels)
    outs[fuse_deeper] = {k: v.numpy() for k, v in neck(c).items()}

  up = lambda x: x.repeat(2, axis=1).repeat(2, axis=2)
  # With 'same' padding a stride-2 3x3 conv's top-left tap reads row 2i-? :
  # TF pads (0, 1) for even sizes, so output (i, j) reads input (2i, 2j)
  # shifted by -1 through the top-left tap of a centred window; compute it.
  def down(x):
    padded = np.pad(x, [(0, 0), (0, 1), (0, 1), (0, 0)])
    return padded[:, 0:-1:2, 0:-1:2]

  # Hand computation with N_l = C_l (identity laterals).
  bu2 = c['2']
  bu3 = c['3'] + down(bu2)
  bu4 = c['4'] + down(bu3)
  buf2 = c['2'] + up(c['3'])
  buf3 = c['3'] + down(buf2) + up(c['4'])
  buf4 = c['4'] + down(buf3)  # the top backbone level has no deeper input
  np.testing.assert_allclose(outs[False]['2'], bu2)
  np.testing.assert_allclose(outs[False]['3'], bu3)
  np.testing.assert_allclose(outs[False]['4'], bu4)
  np.testing.assert_allclose(outs[True]['2'], buf2)
  np.testing.assert_allclose(outs[True]['3'], buf3)
  np.testing.assert_allclose(outs[True]['4'], buf4)
  # Finest level: the only difference is the deeper neighbour's upsample.
  np.testing.assert_allclose(outs[True]['2'] - outs[False]['2'], up(c['3']))
  # P5 is max-pool(k=1, s=2) of P4.
  np.testing.assert_allclose(outs[True]['5'], buf4[:, ::2, ::2])


def test_necks_round_trip_config_and_build_in_model():
  specs = _specs()
  neck = sa_fpn.ScaleAwareFPN(specs, num_filters=16, fusion='add')
  clone = sa_fpn.ScaleAwareFPN.from_config(neck.get_config())
  assert clone.get_config()['fusion'] == 'add'
  with pytest.raises(ValueError, match='fusion'):
    sa_fpn.ScaleAwareFPN(specs, fusion='max')
  config = model_config.TwoStageModel(num_classes=4)
  config.override({
      'backbone': {'resnet': {'model_id': 18, 'depth_multiplier': 0.25}},
      'decoder': {'type': 'sa_fpn', 'sa_fpn': {'num_filters': 32}},
      'rpn_head': {'num_filters': 32},
      'norm_activation': {'use_sync_bn': False}})
  model = factory.build_two_stage_model(config)
  out = model(tf.zeros([1, 128, 128, 3]), tf.constant([[128.0, 128.0]]),
              training=False)
  assert isinstance(model.decoder, sa_fpn.ScaleAwareFPN)
  assert out['detection_boxes'].shape[-1] == 4


def test_sa_fpn_fuses_the_two_paths_as_configured():
  """'add': P_l = TD_l + BU_l; 'concat': P_l = 1x1 conv of [TD_l, BU_l]
  (computed here with numpy from the fuse conv's weights)."""
  specs = _specs()
  inputs = _inputs(specs, seed=3)
  outs = {}
  for fusion in ('add', 'concat'):
    neck = sa_fpn.ScaleAwareFPN(specs, num_filters=8, fusion=fusion,
                                use_norm=False)
    out = neck(inputs)
    td, bu = neck.top_down(inputs), neck.bottom_up(inputs)
    for level in ('2', '4', '6'):
      t, b = td[level].numpy(), bu[level].numpy()
      if fusion == 'add':
        np.testing.assert_allclose(out[level], t + b, rtol=1e-5, atol=1e-5)
      else:
        kernel, bias = neck.get_layer(f'fuse_{level}').get_weights()
        expected = np.einsum('bhwc,cd->bhwd', np.concatenate([t, b], -1),
                             kernel[0, 0]) + bias
        np.testing.assert_allclose(out[level], expected, rtol=1e-4,
                                   atol=1e-4)
        assert not np.allclose(out[level], t + b, atol=1e-3)
    outs[fusion] = neck
  # A concat whose 1x1 conv is [I; I] is exactly the add.
  concat = outs['concat']
  for level in range(2, 7):
    fuse = concat.get_layer(f'fuse_{level}')
    eye = np.eye(8, dtype=np.float32)
    fuse.set_weights([np.concatenate([eye, eye])[None, None],
                      np.zeros(8, np.float32)])
  td, bu = concat.top_down(inputs), concat.bottom_up(inputs)
  out = concat(inputs)
  for level in map(str, range(2, 7)):
    np.testing.assert_allclose(out[level], td[level] + bu[level], rtol=1e-5,
                               atol=1e-5)
