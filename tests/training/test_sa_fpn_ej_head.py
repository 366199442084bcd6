"""SA-FPN + EJ-Head: Table 2 parameter deltas, Enriched Feature, and the full
cascade model exported and served (test_training.py trains it)."""

import os

import numpy as np
import tensorflow as tf

from tests import conftest as root
from tests.training import conftest
from tf_mtdet import families
from tf_mtdet.config import experiment
from tf_mtdet.data import pipeline
from tf_mtdet.modeling import factory
from tf_mtdet.modeling.heads import interleaving
from tf_mtdet.serving import adapters
from tf_mtdet.serving import exporter
from tf_mtdet.serving import predict
from tf_mtdet.training import evaluate

CONFIGS = os.path.join(root.REPO_ROOT, 'configs', 'sa_fpn_ej_head')
# The Table 2 configs, narrowed so they build in seconds; the deltas are the
# same formulas at F = 256, fc_dims = 1024 (configs/sa_fpn_ej_head/README.md).
F = 32  # pyramid channels
FC = 64  # box head FC width
CONV3 = 9 * F * F + F
NARROW = ['model.two_stage.backbone.type=resnet',
          'model.two_stage.backbone.resnet.model_id=18',
          f'model.two_stage.decoder.fpn.num_filters={F}',
          f'model.two_stage.decoder.sa_fpn.num_filters={F}',
          f'model.two_stage.rpn_head.num_filters={F}', f'model.two_stage.mask_head.num_filters={F}',
          f'model.two_stage.detection_head.fc_dims={FC}',
          # Fewer RoIs to run eagerly; parameters do not depend on them.
          'model.two_stage.roi_generator.test_pre_nms_top_k=100',
          'model.two_stage.roi_generator.test_num_proposals=20']


def _params(name: str, *overrides: str) -> int:
  config = experiment.load_config(os.path.join(CONFIGS, name), [
      'model.two_stage.num_classes=81', *NARROW, *overrides])
  model = factory.build_two_stage_model(config.family_model)
  model.call(tf.zeros([1, 64, 64, 3]), tf.constant([[64.0, 64.0]]),
             training=False)
  return int(sum(np.prod(v.shape) for v in model.trainable_variables))


def _sa_fpn_delta(backbone_channels) -> int:
  laterals = sum(c * F + F for c in backbone_channels)
  down = 3 * (CONV3 + 2 * F)      # levels 3-5, conv + BN
  outputs = 4 * (CONV3 + 2 * F)   # levels 2-5, conv + BN
  fuse = 5 * (2 * F * F + F)      # levels 2-6, 1x1 over the concat
  return laterals + down + outputs + fuse


ENRICHED_FC = (14 * 14 - 7 * 7) * F * FC  # the 2fc head's first FC grows
BOUNDARY_REFINEMENT = 2 * CONV3            # one block, shared by both branches


def test_table2_parameter_deltas_match_the_design():
  r18 = (64, 128, 256, 512)
  base = _params('mask_rcnn_r50_td_fpn_1x_coco.yaml')
  assert _params('mask_rcnn_r50_sa_fpn_1x_coco.yaml') - base == (
      _sa_fpn_delta(r18))
  assert _params('mask_rcnn_r50_fpn_ej_head_1x_coco.yaml') - base == (
      ENRICHED_FC + BOUNDARY_REFINEMENT)
  assert _params('mask_rcnn_r50_sa_fpn_ej_head_1x_coco.yaml') - base == (
      _sa_fpn_delta(r18) + ENRICHED_FC + BOUNDARY_REFINEMENT)
  cascade = _params('cascade_mask_rcnn_r50_fpn_1x_coco.yaml')
  assert _params('cascade_mask_rcnn_r50_sa_fpn_ej_head_1x_coco.yaml') - (
      cascade) == (_sa_fpn_delta(r18) + 3 * ENRICHED_FC +
                   BOUNDARY_REFINEMENT)


def test_enriched_feature_feeds_14x14_roi_features_to_the_box_head():
  for enriched, crop in ((False, 7), (True, 14)):
    config = experiment.load_config(
        os.path.join(root.REPO_ROOT, 'configs', 'mask_rcnn',
                     'mask_rcnn_tiny_shapes.yaml'),
        [f'model.two_stage.ej_head.enriched_feature={str(enriched).lower()}',
         'model.two_stage.ej_head.boundary_refinement=residual'])
    model = factory.build_two_stage_model(config.family_model)
    model.call(tf.zeros([1, 64, 64, 3]), tf.constant([[64.0, 64.0]]),
               training=False)
    features = {str(l): tf.zeros([1, 64 // 2**l, 64 // 2**l, 64])
                for l in range(2, 6)}
    pooled = model.roi_aligner(features, tf.constant([[[0., 0., 32., 32.]]]))
    assert pooled.shape == (1, 1, crop, crop, 64)
    first_fc = model.detection_head[0].trainable_weights[0]
    assert first_fc.shape == (crop * crop * 64, 256)
    # The box and the mask pathways share one refinement block.
    assert model.roi_aligner.refinement is model.mask_roi_aligner.refinement


def _mask_targets(model, images, labels, family, interleaving):
  """Training-mode mask targets with the same random draws (seed reset)."""
  assigner = model.mask_roi_assigner
  if not interleaving:
    model.mask_roi_assigner = None
  try:
    tf.random.set_seed(7)
    outputs = model(images, **family.model_inputs(labels, True),
                    training=True)
  finally:
    model.mask_roi_assigner = assigner
  return outputs['mask_targets'].numpy(), outputs['mask_class_targets'].numpy()


def test_full_cascade_model_exports_and_serves(shapes_records, tmp_path):
  """SA-FPN + EJ-Head on a 3-stage Cascade Mask R-CNN (the paper's Table 6
  row): Interleaving changes the mask targets, and the served SavedModel
  returns the checkpoint-restored Keras model's detections. The same model
  trains on 2 replicas with SyncBN in test_training.py (tracing its training
  step a second time here would add minutes and check nothing more)."""
  overrides = conftest.tiny_overrides(shapes_records, **{
      'model.two_stage.decoder.type': 'sa_fpn',
      'model.two_stage.decoder.sa_fpn.num_filters': 64,
      'model.two_stage.roi_sampler.cascade_iou_thresholds': '[0.6, 0.7]',
      'model.two_stage.detection_head.cascade_class_ensemble': 'true',
      'model.two_stage.detection_head.class_agnostic_bbox_pred': 'true',
      'model.two_stage.ej_head.interleaving': 'true',
      'model.two_stage.ej_head.enriched_feature': 'true',
      'model.two_stage.ej_head.boundary_refinement': 'residual',
      # Every box is returned, so the random model has detections to compare.
      'model.two_stage.detection_generator.pre_nms_score_threshold': '0.0',
      'runtime.strategy': 'one_device', **conftest.LEAN_TWO_STAGE})
  config = experiment.load_config(conftest.TINY_CONFIG, overrides)
  model_dir = str(tmp_path / 'model')
  conftest.write_untrained_checkpoint(config, model_dir)

  family = families.get(config)
  model, _ = evaluate.load_model(config, model_dir, family)
  assert len(model.detection_head) == 3
  assert isinstance(model.mask_roi_assigner,
                    interleaving.InterleavedMaskAssigner)
  # predict's signature only (each one traces the whole model).
  version_dir = exporter.export_checkpoint(config, model_dir,
                                           str(tmp_path / 'export'),
                                           signatures=['image_bytes'])
  assert os.path.basename(version_dir) == '1'
  loaded = adapters.load(str(tmp_path / 'export'))
  assert set(loaded.signatures) == {'image_bytes'}
  image_path = os.path.join(os.path.dirname(shapes_records), 'shapes_val',
                            'images', 'shapes_000000.jpg')
  served = predict.predict_image(loaded, image_path, score_threshold=0.0)
  assert served['image_size'] == (256, 320)
  image = tf.io.decode_jpeg(tf.io.read_file(image_path), channels=3)
  parser = family.build_parser(config.eval_data)
  resized, info = parser.preprocess_image(image)
  ref = family.detections(family.call_inference(
      model, resized[tf.newaxis], info[tf.newaxis]))
  n = int(ref['num_detections'][0])
  assert n > 0 and len(served['scores']) == n
  # Class-agnostic cascade boxes come back once per class, often with tied
  # scores: match detections one to one instead of by rank. Graph and eager
  # numerics differ in the last bits, which can flip an NMS tie between two
  # near-identical low-score boxes of this random model: the top
  # detections must all match, and nearly all of the rest.
  boxes = np.clip(ref['detection_boxes'][0, :n].numpy() /
                  np.tile(info.numpy()[2], 2), 0, np.tile(info.numpy()[0], 2))
  unmatched = list(zip(ref['detection_scores'][0, :n].numpy(),
                       ref['detection_classes'][0, :n].numpy(), boxes))
  missed = []
  for rank, (score, cls, box) in enumerate(zip(
      served['scores'], served['classes'], served['boxes'])):
    hit = next((i for i, (s, c, b) in enumerate(unmatched)
                if c == cls and abs(s - score) < 1e-4 and
                np.abs(b - box).max() < 1e-2), None)
    if hit is None:
      missed.append(rank)
    else:
      unmatched.pop(hit)
  assert not [r for r in missed if r < 5], missed
  assert len(missed) <= 0.1 * n, (missed, n)

  # Last: training-mode calls update the BN moving statistics.
  images, labels = next(iter(pipeline.dataset(
      config.train_data, family.build_parser(config.train_data))))
  on = _mask_targets(model, images, labels, family, interleaving=True)
  off = _mask_targets(model, images, labels, family, interleaving=False)
  assert on[0].shape == off[0].shape
  assert not np.allclose(on[0], off[0], atol=1e-3)



# Each table row's switches: (neck type, fuse_deeper, fusion, interleaving,
# enriched feature, boundary refinement, ResNet depth, cascade stages, epochs).
TABLE_ROWS = {
    'mask_rcnn_r50_td_fpn_1x_coco.yaml': ('fpn', None, None, 0, 0, 'none', 50, 1, 12),
    'mask_rcnn_r50_bu_fpn_1x_coco.yaml': ('bu_fpn', False, None, 0, 0, 'none', 50, 1, 12),
    'mask_rcnn_r50_buf_fpn_1x_coco.yaml': ('bu_fpn', True, None, 0, 0, 'none', 50, 1, 12),
    'mask_rcnn_r50_td_add_buf_fpn_1x_coco.yaml': ('sa_fpn', True, 'add', 0, 0, 'none', 50, 1, 12),
    'mask_rcnn_r50_sa_fpn_1x_coco.yaml': ('sa_fpn', True, 'concat', 0, 0, 'none', 50, 1, 12),
    'mask_rcnn_r50_fpn_interleaving_1x_coco.yaml': ('fpn', None, None, 1, 0, 'none', 50, 1, 12),
    'mask_rcnn_r50_fpn_enriched_1x_coco.yaml': ('fpn', None, None, 0, 1, 'none', 50, 1, 12),
    'mask_rcnn_r50_fpn_interleaving_enriched_1x_coco.yaml': ('fpn', None, None, 1, 1, 'none', 50, 1, 12),
    'mask_rcnn_r50_fpn_br_1x_coco.yaml': ('fpn', None, None, 0, 0, 'residual', 50, 1, 12),
    'mask_rcnn_r50_fpn_br_conv1_1x_coco.yaml': ('fpn', None, None, 0, 0, 'conv1', 50, 1, 12),
    'mask_rcnn_r50_fpn_br_conv2_1x_coco.yaml': ('fpn', None, None, 0, 0, 'conv2', 50, 1, 12),
    'mask_rcnn_r50_fpn_br_conv3_1x_coco.yaml': ('fpn', None, None, 0, 0, 'conv3', 50, 1, 12),
    'mask_rcnn_r50_fpn_ej_head_1x_coco.yaml': ('fpn', None, None, 1, 1, 'residual', 50, 1, 12),
    'mask_rcnn_r50_sa_fpn_ej_head_1x_coco.yaml': ('sa_fpn', True, 'concat', 1, 1, 'residual', 50, 1, 12),
    'mask_rcnn_r101_fpn_1x_coco.yaml': ('fpn', None, None, 0, 0, 'none', 101, 1, 12),
    'mask_rcnn_r101_sa_fpn_ej_head_1x_coco.yaml': ('sa_fpn', True, 'concat', 1, 1, 'residual', 101, 1, 12),
    'mask_rcnn_r101_sa_fpn_ej_head_20e_coco.yaml': ('sa_fpn', True, 'concat', 1, 1, 'residual', 101, 1, 20),
    'cascade_mask_rcnn_r50_fpn_1x_coco.yaml': ('fpn', None, None, 0, 0, 'none', 50, 3, 12),
    'cascade_mask_rcnn_r50_sa_fpn_ej_head_1x_coco.yaml': ('sa_fpn', True, 'concat', 1, 1, 'residual', 50, 3, 12),
}


def test_every_table_row_has_its_switches():
  assert sorted(TABLE_ROWS) == sorted(
      n for n in os.listdir(CONFIGS) if n.endswith('.yaml'))
  for name, expected in TABLE_ROWS.items():
    config = experiment.load_config(os.path.join(CONFIGS, name))
    model = config.family_model
    neck = model.decoder.type
    fuse = {'fpn': None, 'bu_fpn': model.decoder.bu_fpn.fuse_deeper,
            'sa_fpn': model.decoder.sa_fpn.fuse_deeper}[neck]
    fusion = model.decoder.sa_fpn.fusion if neck == 'sa_fpn' else None
    ej = model.ej_head
    stages = 1 + len(model.roi_sampler.cascade_iou_thresholds or [])
    got = (neck, fuse, fusion, int(ej.interleaving), int(ej.enriched_feature),
           ej.boundary_refinement, model.backbone.resnext.model_id, stages,
           config.schedule.epochs)
    assert got == expected, name
