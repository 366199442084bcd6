"""DATNet's fusion: 'sum' has no weights; 'sum2conv'/'sum4conv' share their
convs across levels."""

import numpy as np
import tensorflow as tf

from tf_mtdet.config import two_stage as two_stage_config
from tf_mtdet.modeling import factory  # noqa: F401  # registers the parts
from tf_mtdet.modeling import registry


def _inputs(channels=8):
  features = {str(l): tf.random.normal([1, 32 // 2**l, 40 // 2**l, channels])
              for l in range(2, 6)}
  aux = {'distance_transform': {
             'fusion_features': tf.ones([1, 8, 10, channels]),
             'logits': tf.zeros([1, 8, 10, 4])},
         'semantic': {'fusion_features': 2 * tf.ones([1, 8, 10, channels])}}
  return features, aux


def test_sum_has_no_weights_and_adds_every_head():
  cfg = two_stage_config.FeatureFusion(type='sum')
  fusion = registry.build('feature_fusion', 'sum', cfg.get(), None)
  features, aux = _inputs()
  out = fusion(features, aux)
  assert not fusion.weights
  for level, value in features.items():
    # Constant maps resize to the same constant: + 1 + 2.
    np.testing.assert_allclose(out[level].numpy(), value.numpy() + 3.0,
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
    assert all(float(tf.reduce_min(v)) >= 0.0 for v in out.values())  # ReLU
    # The same convs on the summed input of one level reproduce its output.
    summed = features['3'] + 3.0
    for conv in fusion._convs:  # pylint: disable=protected-access
      summed = conv(summed)
    np.testing.assert_allclose(out['3'].numpy(), summed.numpy(), atol=1e-5)
