"""DATNet's fusion: 'sum' has no weights; 'sum2conv'/'sum4conv' share their
convs across levels; only P2-P5 are fused (P6 passes unchanged)."""

import numpy as np
import tensorflow as tf

from tf_mtdet.config import two_stage as two_stage_config
from tf_mtdet.modeling import factory  # noqa: F401  # registers the parts
from tf_mtdet.modeling import registry


def _inputs(channels=8):
  features = {str(l): tf.random.normal([1, 64 // 2**l, 64 // 2**l, channels])
              for l in range(2, 7)}
  aux = {'distance_transform': {
             'fusion_features': tf.ones([1, 16, 16, channels]),
             'logits': tf.zeros([1, 16, 16, 4])},
         'semantic': {'fusion_features': 2 * tf.ones([1, 16, 16, channels])}}
  return features, aux


def test_sum_has_no_weights_and_adds_every_head():
  cfg = two_stage_config.FeatureFusion(type='sum')
  fusion = registry.build('feature_fusion', 'sum', cfg.get(), None)
  features, aux = _inputs()
  out = fusion(features, aux)
  assert not fusion.weights
  for level, value in features.items():
    # Constant maps resize to the same constant: + 1 + 2 on P2-P5 (the
    # paper's P'_2..P'_5); P6 reaches the RPN unfused.
    added = 3.0 if level != '6' else 0.0
    np.testing.assert_allclose(out[level].numpy(), value.numpy() + added,
                               rtol=1e-5, atol=1e-5)


def test_sum_n_conv_shares_its_convs_across_levels():
  for name, num_convs in (('sum2conv', 2), ('sum4conv', 4)):
    cfg = two_stage_config.FeatureFusion(type=name)
    cfg.get().num_filters = 8
    fusion = registry.build('feature_fusion', name, cfg.get(), None)
    features, aux = _inputs()
    out = fusion(features, aux)
    assert {k: v.shape for k, v in out.items()} == {
        k: v.shape for k, v in features.items()}
    # One kernel + bias per conv, whatever the number of levels.
    assert len(fusion.trainable_weights) == 2 * num_convs
    assert sum(w.shape.num_elements() for w in fusion.trainable_weights) == (
        num_convs * (9 * 8 * 8 + 8))
    assert all(float(tf.reduce_min(v)) >= 0.0  # ReLU on the fused levels
               for k, v in out.items() if k != '6')
    np.testing.assert_array_equal(out['6'].numpy(), features['6'].numpy())
    # The same convs on the summed input of one level reproduce its output.
    summed = features['3'] + 3.0
    for conv in fusion._convs:  # pylint: disable=protected-access
      summed = conv(summed)
    np.testing.assert_allclose(out['3'].numpy(), summed.numpy(), atol=1e-5)
