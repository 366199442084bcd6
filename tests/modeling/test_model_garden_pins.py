"""Pins of the Model Garden private methods `TwoStageModel` still calls.

`TwoStageModel.call` owns the call path, but reuses `MaskRCNNModel.
_run_frcnn_head` (sampling, pooling, box head per stage) and
`_call_mask_outputs` (mask sampler, pooler, head). If an upgrade changes their
signature or outputs, these fail instead of the model silently misbehaving.
"""

import inspect

import tensorflow as tf

from official.vision.modeling import maskrcnn_model

from tests.training import conftest
from tf_mtdet import families
from tf_mtdet.config import experiment


def test_private_signatures_we_call():
  frcnn = inspect.signature(maskrcnn_model.MaskRCNNModel._run_frcnn_head)
  assert list(frcnn.parameters) == [
      'self', 'features', 'rois', 'gt_boxes', 'gt_classes', 'training',
      'model_outputs', 'cascade_num', 'regression_weights', 'gt_outer_boxes']
  mask = inspect.signature(maskrcnn_model.MaskRCNNModel._call_mask_outputs)
  assert list(mask.parameters) == [
      'self', 'model_box_outputs', 'features', 'current_rois',
      'matched_gt_indices', 'matched_gt_boxes', 'matched_gt_classes',
      'gt_masks', 'training']
  assert hasattr(maskrcnn_model.MaskRCNNModel, '_features_to_mask_outputs')


def test_private_outputs_we_read():
  config = experiment.load_config(conftest.TINY_CONFIG, [
      'train_data.label_map=', 'model.two_stage.num_classes=3'])
  model = families.get(config).build_model()
  images = tf.random.uniform([1, 64, 64, 3])
  shape = tf.constant([[64.0, 64.0]])
  gt_boxes = tf.constant([[[4.0, 4.0, 40.0, 40.0], [-1, -1, -1, -1]]])
  gt_classes = tf.constant([[1, -1]])
  gt_masks = tf.ones([1, 2, 56, 56])
  outputs = model(images, shape, gt_boxes=gt_boxes, gt_classes=gt_classes,
                  gt_masks=gt_masks, training=True)
  # Written by _run_frcnn_head into model_outputs, read by our losses.
  for key in ('class_outputs', 'box_outputs', 'class_targets', 'box_targets'):
    assert key in outputs, key
  # Written by _call_mask_outputs in training.
  for key in ('mask_outputs', 'mask_targets', 'mask_class_targets'):
    assert key in outputs, key
  # _run_frcnn_head returns 7 values (class, box, outputs, matched boxes,
  # classes, indices, rois).
  features = model.decoder(model.backbone(images))
  anchors = model._anchors_for(images)  # pylint: disable=protected-access
  rois, _ = model.roi_generator(*model.rpn_head(features)[::-1], anchors,
                                shape, True)
  result = model._run_frcnn_head(  # pylint: disable=protected-access
      features=features, rois=rois, gt_boxes=gt_boxes, gt_classes=gt_classes,
      training=True, model_outputs={}, cascade_num=0,
      regression_weights=model._cascade_layer_to_weights[0])  # pylint: disable=protected-access
  assert len(result) == 7
  assert result[6].shape[-1] == 4 and result[5].shape == result[4].shape


def test_keras_option_scope_skips_layer_traces_and_keeps_signatures(tmp_path):
  """The export writes without tf_keras's per-layer call traces (5x faster);
  pinned: the private scope still exists, drops the traces, and the
  signature still serves the layer's weights."""
  import tf_keras  # pylint: disable=g-import-not-at-top
  from tf_keras.src.saving.legacy.saved_model import utils  # pylint: disable=g-import-not-at-top

  def save(path, traces):
    module = tf.Module()
    inputs = tf_keras.Input([3])
    module.layer = tf_keras.Model(inputs, tf_keras.layers.Dense(
        2, kernel_initializer='ones', bias_initializer='zeros')(inputs))
    module.layer(tf.ones([1, 3]))  # a called model has traces to save
    serve = tf.function(lambda x: {'y': module.layer(x)},
                        input_signature=[tf.TensorSpec([None, 3])])
    with utils.keras_option_scope(save_traces=traces,
                                  in_tf_saved_model_scope=True):
      tf.saved_model.save(module, str(path), signatures=serve)
    assert utils.should_save_traces()  # the scope restores the default
    from tensorflow.core.protobuf import saved_model_pb2  # pylint: disable=g-import-not-at-top
    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((path / 'saved_model.pb').read_bytes())
    return [f.signature.name for f in proto.meta_graphs[0].graph_def.library
            .function]

  with_traces = save(tmp_path / 'traces', True)
  without = save(tmp_path / 'none', False)
  assert any('call_and_return' in name for name in with_traces)
  assert not any('call_and_return' in name for name in without)
  loaded = tf.saved_model.load(str(tmp_path / 'none'))
  y = loaded.signatures['serving_default'](tf.constant([[1.0, 2.0, 3.0]]))
  assert y['y'].numpy().tolist() == [[6.0, 6.0]]
