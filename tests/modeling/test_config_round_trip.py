"""get_config / from_config keep our own settings.

Model Garden's `MaskRCNNModel.get_config` returns live layers, so a clone
shares them and comparing outputs proves nothing about the config: these tests
set non-default values of the keys we add and assert each survives, on the
model and on each layer we register (whose configs are plain values).
"""

import json

import numpy as np
import tensorflow as tf
import tf_keras

from tests.training import conftest
from tf_mtdet.config import experiment
from tf_mtdet.modeling import factory
from tf_mtdet.modeling import feature_fusion
from tf_mtdet.modeling import two_stage
from tf_mtdet.modeling.heads import boundary_refinement
from tf_mtdet.modeling.heads import interleaving
from tf_mtdet.modeling.heads import semantic_head
from tf_mtdet.modeling.necks import sa_fpn


def test_two_stage_model_keeps_our_parts():
  config = experiment.load_config(conftest.TINY_CONFIG, [
      'model.two_stage.dense_aux_heads=[{type: semantic, semantic: '
      '{num_classes: 5, num_filters: 16, num_fused_convs: 1}}]',
      'model.two_stage.feature_fusion.type=sum',
      'model.two_stage.ej_head.interleaving=true',
      'model.two_stage.ej_head.interleaving_iou=0.6'])
  model = factory.build_two_stage_model(config.family_model)
  clone = two_stage.TwoStageModel.from_config(model.get_config())
  assert list(clone.dense_aux_heads) == ['semantic']
  assert clone.dense_aux_heads['semantic'].get_config()['num_classes'] == 5
  assert isinstance(clone.feature_fusion, feature_fusion.SumFusion)
  assert isinstance(clone.mask_roi_assigner,
                    interleaving.InterleavedMaskAssigner)
  assert clone.mask_roi_assigner.iou_threshold == 0.6
  # Without them, the clone has none (defaults do not leak in).
  plain = factory.build_two_stage_model(
      experiment.load_config(conftest.TINY_CONFIG).family_model)
  plain_clone = two_stage.TwoStageModel.from_config(plain.get_config())
  assert (plain_clone.dense_aux_heads, plain_clone.feature_fusion,
          plain_clone.mask_roi_assigner) == ({}, None, None)


def _round_trip(layer: tf_keras.layers.Layer) -> tf_keras.layers.Layer:
  """Through JSON and Keras' registry, as a saved model's config travels."""
  serialized = json.loads(json.dumps(
      tf_keras.utils.serialize_keras_object(layer)))
  assert serialized['registered_name'].startswith('tf_mtdet>')
  return tf_keras.utils.deserialize_keras_object(serialized)


def test_semantic_head_round_trip_rebuilds_the_same_function():
  head = semantic_head.SemanticHead(num_classes=3, min_level=2, max_level=3,
                                    num_filters=8, num_fused_convs=1)
  features = {'2': tf.random.uniform([1, 16, 16, 8], seed=1),
              '3': tf.random.uniform([1, 8, 8, 8], seed=2)}
  outputs = head(features)
  clone = _round_trip(head)
  assert clone.get_config() == head.get_config()
  clone(features)
  clone.set_weights(head.get_weights())
  for key, value in outputs.items():
    np.testing.assert_allclose(clone(features)[key], value, atol=1e-6)


def test_boundary_refinement_variant_survives():
  for variant in ('conv1', 'conv2', 'conv3', 'residual'):
    layer = boundary_refinement.BoundaryRefinement(
        variant=variant, zero_init_last=True)
    clone = _round_trip(layer)
    assert clone.get_config()['variant'] == variant
    assert clone.get_config()['zero_init_last'] is True


def test_sa_fpn_fusion_survives():
  specs = {str(l): tf.TensorShape([None, 64 // 2**(l - 2), 64 // 2**(l - 2), 8])
           for l in range(2, 6)}
  neck = sa_fpn.ScaleAwareFPN(specs, min_level=2, max_level=5, num_filters=8,
                              fusion='add', fuse_deeper=False, use_norm=False)
  # Like Model Garden's FPN, the config holds TensorShapes (not JSON).
  clone = sa_fpn.ScaleAwareFPN.from_config(neck.get_config())
  assert clone.get_config()['fusion'] == 'add'
  assert clone.get_config()['fuse_deeper'] is False
  assert clone.get_config()['num_filters'] == 8
