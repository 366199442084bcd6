"""DATNet: the tiny config trains on 2 replicas with SyncBN (DT and semantic
losses falling), evaluates, exports and serves; every table row's switches.
(Table 7's parameter counts: tests/modeling/test_datnet_params.py.)"""

import glob
import json
import os
import textwrap

import numpy as np

from tests import conftest as root
from tests.training import conftest
from tf_mtdet.config import experiment
from tf_mtdet.serving import adapters
from tf_mtdet.serving import exporter
from tf_mtdet.serving import predict
from tf_mtdet.training import evaluate

CONFIGS = os.path.join(root.REPO_ROOT, 'configs', 'datnet')
TINY = os.path.join(CONFIGS, 'datnet_tiny_shapes.yaml')

_SETUP = """
import json, tensorflow as tf
cpu = tf.config.list_physical_devices('CPU')[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from tf_mtdet.config import experiment
from tf_mtdet.training import train
"""


def test_tiny_datnet_trains_on_two_replicas_evaluates_exports_serves(
    shapes_records, tmp_path):
  # The heads' classifiers start near uniform (stddev 0.01) and the focal
  # loss is flat there: weight 1 (not the paper's 0.25) and a 1-step warmup
  # make 12 steps enough to see both losses fall.
  # Levels 2-4: the lean pyramid (conftest.LEAN_TWO_STAGE).
  heads = ('[{type: distance_transform, distance_transform: {num_filters: 64, '
           'loss_weight: 1.0, levels: [2, 4]}}, {type: semantic, semantic: '
           '{architecture: datnet, num_filters: 64, loss: focal, '
           'loss_weight: 1.0, levels: [2, 4]}}]')
  overrides = conftest.tiny_overrides(shapes_records, **{
      'schedule.total_steps': 12, 'schedule.steps_per_epoch': 4,
      'schedule.warmup_steps': 1, 'train_data.global_batch_size': 4,
      'model.two_stage.dense_aux_heads': heads,
      'model.two_stage.norm_activation.use_sync_bn': 'true',
      'model.two_stage.roi_aligner.multi_scale_levels': '[2, 4]',
      'model.two_stage.mask_roi_aligner.multi_scale_levels': '[2, 4]',
      **conftest.LEAN_TWO_STAGE})
  model_dir = str(tmp_path / 'model')
  code = _SETUP + textwrap.dedent(f"""
      config = experiment.load_config({TINY!r}, {overrides!r})
      strategy = tf.distribute.MirroredStrategy()
      assert strategy.num_replicas_in_sync == 2
      result = train.train(config, {model_dir!r}, verbose=0)
      print('HISTORY', json.dumps(result['history']))
      """)
  out = conftest.run_python(code, timeout=900)
  print(out.stdout.split('HISTORY', 1)[1][:2000])
  logs = json.loads(out.stdout.split('HISTORY', 1)[1].strip().splitlines()[0])
  for name, values in logs.items():
    assert len(values) == 3 and all(np.isfinite(values)), (name, values)
  for name in ('distance_transform_loss', 'semantic_loss', 'total_loss'):
    assert logs[name][-1] < logs[name][0], (name, logs[name])

  config = experiment.load_config(TINY, overrides)
  metrics = evaluate.evaluate(config, model_dir)
  assert 'AP' in metrics and 'mask_AP' in metrics
  # One signature (predict's): each traces the whole model; the baseline's
  # tests check all three.
  version_dir = exporter.export_checkpoint(config, model_dir,
                                           str(tmp_path / 'export'),
                                           signatures=['image_bytes'])
  assert os.path.basename(version_dir) == '1'
  loaded = adapters.load(str(tmp_path / 'export'))
  assert set(loaded.signatures) == {'image_bytes'}
  image = os.path.join(os.path.dirname(shapes_records), 'shapes_val',
                       'images', 'shapes_000000.jpg')
  detections = predict.predict_image(loaded, image, score_threshold=0.0)
  assert detections['boxes'].shape[1] == 4
  assert detections['image_size'] == (256, 320)


# Each row's switches: (dense heads, fusion, box pooler, box crop, box head,
# RoI trunk, mask head, backbone, epochs, MST, metrics, include_mask).
LIGHT = ('distance_transform+semantic', 'sum', 'multi_scale_attention', 7,
         'res5', '', 'conv_deconv')
HEAVY = ('distance_transform+semantic', 'sum', 'multi_scale_attention', 14,
         'avg_pool', 'res5', 'conv_deconv')
MR = ('', None, 'level_assigned', 7, 'fc', '', 'conv_deconv')
# The tiny models keep Model Garden's mask head (BN, trained from scratch).
TINY_ROW = (*LIGHT[:-1], 'fcn')
TABLE_ROWS = {
    # Table 2 / 3 baseline (and Table 7 Mask R-CNN R50)
    'mask_rcnn_r50_fpn_1x_coco.yaml': (*MR, 'resnext', 12, False, [], True),
    # Table 2
    'mask_rcnn_r50_fpn_dt_1x_coco.yaml': (
        'distance_transform', 'sum', 'level_assigned', 7, 'fc', '', 'conv_deconv',
        'resnext', 12, False, [], True),
    'mask_rcnn_r50_fpn_semantic_1x_coco.yaml': (
        'semantic', 'sum', 'level_assigned', 7, 'fc', '', 'conv_deconv', 'resnext', 12,
        False, [], True),
    'mask_rcnn_r50_fpn_dt_semantic_1x_coco.yaml': (
        'distance_transform+semantic', 'sum', 'level_assigned', 7, 'fc', '',
        'conv_deconv', 'resnext', 12, False, [], True),
    # Table 3
    'mask_rcnn_r50_fpn_4conv1fc_1x_coco.yaml': (*MR, 'resnext', 12, False, [],
                                                True),
    'mask_rcnn_r50_fpn_res5_1x_coco.yaml': (
        '', None, 'level_assigned', 7, 'res5', '', 'conv_deconv', 'resnext', 12, False,
        [], True),
    'mask_rcnn_r50_fpn_mspwa_2fc_1x_coco.yaml': (
        '', None, 'multi_scale_attention', 7, 'fc', '', 'conv_deconv', 'resnext', 12,
        False, [], True),
    'mask_rcnn_r50_fpn_mspwa_4conv1fc_1x_coco.yaml': (
        '', None, 'multi_scale_attention', 7, 'fc', '', 'conv_deconv', 'resnext', 12,
        False, [], True),
    'mask_rcnn_r50_fpn_mspwa_res5_1x_coco.yaml': (
        '', None, 'multi_scale_attention', 7, 'res5', '', 'conv_deconv', 'resnext', 12,
        False, [], True),
    # Table 4 (and Table 1/7 R50)
    'datnet_light_r50_fpn_1x_coco.yaml': (*LIGHT, 'resnext', 12, False, [],
                                          True),
    'datnet_light_r50_fpn_2x_coco.yaml': (*LIGHT, 'resnext', 24, False, [],
                                          True),
    'datnet_light_r50_fpn_mst_2x_coco.yaml': (*LIGHT, 'resnext', 24, True, [],
                                              True),
    'datnet_heavy_r50_fpn_1x_coco.yaml': (*HEAVY, 'resnext', 12, False, [],
                                          True),
    'datnet_heavy_r50_fpn_2x_coco.yaml': (*HEAVY, 'resnext', 24, False, [],
                                          True),
    'datnet_heavy_r50_fpn_mst_2x_coco.yaml': (*HEAVY, 'resnext', 24, True, [],
                                              True),
    # Table 5
    'mask_rcnn_r50_fpn_1x_coco_proposals.yaml': (
        *MR, 'resnext', 12, False, ['proposal_recall'], True),
    'datnet_light_r50_fpn_sum_1x_coco_proposals.yaml': (
        *LIGHT, 'resnext', 12, False, ['proposal_recall'], True),
    'datnet_heavy_r50_fpn_sum_1x_coco_proposals.yaml': (
        *HEAVY, 'resnext', 12, False, ['proposal_recall'], True),
    'datnet_heavy_r50_fpn_sum2conv_1x_coco_proposals.yaml': (
        HEAVY[0], 'sum2conv', *HEAVY[2:], 'resnext', 12, False,
        ['proposal_recall'], True),
    'datnet_heavy_r50_fpn_sum4conv_1x_coco_proposals.yaml': (
        HEAVY[0], 'sum4conv', *HEAVY[2:], 'resnext', 12, False,
        ['proposal_recall'], True),
    # Table 6 (VOC, box proxy masks)
    'faster_rcnn_r50_fpn_voc0712.yaml': (*MR, 'resnext', 12, False,
                                         ['coco', 'voc07'], False),
    'mask_rcnn_r50_fpn_box_masks_voc0712.yaml': (*MR, 'resnext', 12, False,
                                                 ['coco', 'voc07'], True),
    'datnet_light_r50_fpn_box_masks_voc0712.yaml': (
        *LIGHT, 'resnext', 12, False, ['coco', 'voc07'], True),
    # Table 1 / 7 (ResNeXt-101 32x8d)
    'datnet_light_x101_32x8d_fpn_1x_coco.yaml': (*LIGHT, 'resnext', 12, False,
                                                 [], True),
    'datnet_heavy_x101_32x8d_fpn_1x_coco.yaml': (*HEAVY, 'resnext', 12, False,
                                                 [], True),
    'datnet_light_x101_32x8d_fpn_mst_2x_coco.yaml': (
        *LIGHT, 'resnext', 24, True, [], True),
    'datnet_heavy_x101_32x8d_fpn_mst_2x_coco.yaml': (
        *HEAVY, 'resnext', 24, True, [], True),
    'datnet_tiny_shapes.yaml': (*TINY_ROW, 'resnet', 12, False, [], True),
    'datnet_quickstart_shapes.yaml': (*TINY_ROW, 'resnet', 12, False, [], True),
}


def test_every_table_row_has_its_switches():
  assert sorted(TABLE_ROWS) == sorted(
      os.path.basename(p) for p in glob.glob(os.path.join(CONFIGS, '*.yaml')))
  for name, want in TABLE_ROWS.items():
    config = experiment.load_config(os.path.join(CONFIGS, name))
    m = config.model.two_stage
    got = ('+'.join(h.type for h in m.dense_aux_heads), m.feature_fusion.type,
           m.roi_aligner.type, m.roi_aligner.crop_size,
           m.detection_head.type, m.roi_trunk.type, m.mask_head.type,
           m.backbone.type, config.schedule.epochs,
           len(config.train_data.parser.short_side) > 1,
           list(config.eval_data.metrics), m.include_mask)
    assert got == want, name
    for head in m.dense_aux_heads:
      assert head.get().loss_weight == 0.25, name
      if head.type == 'semantic':
        assert head.get().loss == 'focal', name
    x = m.backbone.resnext
    if m.backbone.type == 'resnext' and x.cardinality > 1:
      assert (x.model_id, x.cardinality, x.width_per_group) == (101, 32, 8)
      assert config.train_data.global_batch_size == 8
    if m.backbone.type == 'resnext':
      # maskrcnn-benchmark's setting: frozen ImageNet BN, stem and res2
      # frozen, no SyncBN, the MSRA/FAIR weights.
      assert (x.frozen_bn, x.freeze_at, m.norm_activation.use_sync_bn) == (
          True, 2, False), name
      assert config.runtime.init_checkpoint in (
          'imagenet/resnet50_msra', 'imagenet/resnext101_32x8d_fair'), name
    if 'mst' in name:
      p = config.train_data.parser
      assert (min(p.short_side), max(p.short_side), p.long_side) == (
          400, 1200, 1400)
    if m.roi_trunk.type == 'res5':  # Heavy: 14x14 mask targets
      assert m.mask_roi_aligner.crop_size * m.mask_head.upsample_factor == 14
  voc = experiment.load_config(
      os.path.join(CONFIGS, 'datnet_light_r50_fpn_box_masks_voc0712.yaml'))
  s = voc.schedule
  assert (s.epochs * s.steps_per_epoch, s.decay_epochs[0] * s.steps_per_epoch,
          s.base_learning_rate, voc.train_data.global_batch_size) == (
              24000, 18000, 0.01, 8)
  parser = voc.train_data.parser
  assert (parser.short_side, parser.long_side) == ([600], 1000)
