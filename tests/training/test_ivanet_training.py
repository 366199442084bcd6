"""Tiny IvaNet end to end: trains on 2 replicas with SyncBN (detection and
segmentation losses falling), evaluates VOC mAP and mIoU, exports, and
serves a semantic map at the original image size."""

import json
import os
import textwrap

from tests import conftest as root
from tests.training import conftest

IVANET_TINY = os.path.join(root.REPO_ROOT, 'configs', 'ivanet',
                           'ivanet_tiny_shapes.yaml')


def test_tiny_ivanet_trains_on_two_replicas_evaluates_and_serves(
    shapes_records, tmp_path):
  overrides = conftest.tiny_overrides(shapes_records, **{
      'schedule.total_steps': 16, 'schedule.steps_per_epoch': 8,
      'schedule.warmup_steps': 0, 'schedule.base_learning_rate': 0.003,
      'train_data.global_batch_size': 4,
      'model.single_shot.norm_activation.use_sync_bn': 'true',
      # ResNet-10: less to trace per replica (conftest.LEAN_TWO_STAGE).
      'model.single_shot.backbone.resnet.model_id': '10'})
  image = os.path.join(os.path.dirname(shapes_records), 'shapes_val',
                       'images', 'shapes_000000.jpg')
  code = textwrap.dedent(f"""
      import json, numpy as np, tensorflow as tf
      cpu = tf.config.list_physical_devices('CPU')[0]
      tf.config.set_logical_device_configuration(
          cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
      from tf_mtdet.config import experiment
      from tf_mtdet.serving import adapters, exporter, predict
      from tf_mtdet.training import evaluate, train
      config = experiment.load_config({IVANET_TINY!r}, {overrides!r})
      model_dir = {str(tmp_path / 'model')!r}
      # runtime.strategy 'mirrored' takes every visible device: 2 replicas.
      assert tf.distribute.MirroredStrategy().num_replicas_in_sync == 2
      result = train.train(config, model_dir, verbose=0)
      metrics = evaluate.evaluate(config, model_dir)
      # predict's signature only (each one traces the whole model).
      exporter.export_checkpoint(config, model_dir, {str(tmp_path / 'export')!r},
                                 signatures=['image_bytes'])
      detections = predict.predict_image(
          adapters.load({str(tmp_path / 'export')!r}), {image!r},
          score_threshold=0.0)
      semantic = detections['semantic_map']
      print('RESULT', json.dumps(dict(
          history=result['history'], metrics=metrics,
          image_size=detections['image_size'],
          semantic_shape=semantic.shape, semantic_dtype=str(semantic.dtype),
          semantic_max=int(semantic.max()),
          boxes=detections['boxes'].shape)))
      """)
  out = conftest.run_python(code, timeout=900)
  result = json.loads(out.stdout.split('RESULT', 1)[1].strip().splitlines()[0])
  logs = result['history']
  for name in ('cls_loss', 'box_loss', 'semantic_loss', 'total_loss'):
    assert len(logs[name]) == 2 and all(v == v for v in logs[name]), logs
  assert (logs['cls_loss'][-1] + logs['box_loss'][-1] <
          logs['cls_loss'][0] + logs['box_loss'][0]), logs
  assert logs['semantic_loss'][-1] < logs['semantic_loss'][0], logs
  metrics = result['metrics']
  assert 0.0 <= metrics['voc07_mAP@0.5'] <= 1.0
  assert 0.0 < metrics['mIoU'] <= 1.0
  # Served at the original 256x320 size, class ids 0..3.
  assert result['image_size'] == [256, 320]
  assert result['semantic_shape'] == [256, 320]
  assert result['semantic_dtype'] == 'uint8'
  assert result['semantic_max'] <= 3
  assert result['boxes'][1] == 4
