"""DATNet's FPN (maskrcnn-benchmark's): no normalisation, P6 = P5 subsampled
(a stride-2 pick of P5, no weights), top-down sum by value."""

import numpy as np
import tensorflow as tf

from tf_mtdet.config import two_stage as two_stage_config
from tf_mtdet.modeling import factory  # noqa: F401  # registers the necks
from tf_mtdet.modeling.necks import plain_fpn
from official.vision.modeling.decoders import factory as decoder_factory


def _specs(channels=(4, 6, 8, 10)):
  return {str(l): tf.TensorShape([None, 64 // 2**l, 64 // 2**l, c])
          for l, c in zip(range(2, 6), channels)}


def test_plain_fpn_by_value_and_p6_subsampled():
  fpn = plain_fpn.PlainFPN(_specs(), min_level=2, max_level=6, num_filters=1)
  # No normalisation: only the 4 lateral and 4 output convs' kernels + biases.
  assert len(fpn.trainable_weights) == 16 and not fpn.non_trainable_weights
  # Laterals sum their input channels, output convs pass their centre tap.
  for layer in fpn.layers:
    if layer.name.startswith('lateral_'):
      layer.set_weights([np.ones(layer.kernel.shape, np.float32),
                         np.zeros(1, np.float32)])
    elif layer.name.startswith('post_hoc_'):
      kernel = np.zeros(layer.kernel.shape, np.float32)
      kernel[1, 1] = 1.0
      layer.set_weights([kernel, np.zeros(1, np.float32)])
  rng = np.random.default_rng(0)
  inputs = {k: tf.constant(rng.normal(size=[1] + v.as_list()[1:]),
                           tf.float32) for k, v in _specs().items()}
  out = {k: v.numpy()[0, ..., 0] for k, v in fpn(inputs).items()}
  lateral = {int(k): v.numpy()[0].sum(-1) for k, v in inputs.items()}
  want = {5: lateral[5]}
  for level in (4, 3, 2):
    want[level] = lateral[level] + np.kron(want[level + 1], np.ones((2, 2)))
  for level in range(2, 6):
    np.testing.assert_allclose(out[str(level)], want[level], atol=1e-4)
  np.testing.assert_allclose(out['6'], want[5][::2, ::2], atol=1e-4)


def test_plain_fpn_registered_and_counted():
  cfg = two_stage_config.TwoStageModel(num_classes=3, min_level=2,
                                       max_level=6)
  cfg.decoder.type = 'plain_fpn'
  specs = _specs((256, 512, 1024, 2048))
  fpn = decoder_factory.build_decoder(specs, cfg)
  assert isinstance(fpn, plain_fpn.PlainFPN)
  assert sorted(fpn.output_specs) == ['2', '3', '4', '5', '6']
  # maskrcnn-benchmark's R50 FPN: 4 laterals + 4 conv3x3, 3,344,384.
  count = sum(w.shape.num_elements() for w in fpn.trainable_weights)
  assert count == (256 + 512 + 1024 + 2048) * 256 + 4 * 256 + 4 * (
      9 * 256 * 256 + 256) == 3_344_384
  clone = plain_fpn.PlainFPN.from_config(fpn.get_config())
  assert sorted(clone.output_specs) == sorted(fpn.output_specs)
