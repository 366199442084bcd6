"""Backbone initialisation, the evaluate/export CLI, mixed bfloat16."""

import json
import math
import os

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
import pytest
import tensorflow as tf
import tf_keras

from tests.training import conftest
from tf_mtdet import cli
from tf_mtdet.config import experiment
from tf_mtdet.training import train



def _config(records, **extra):
  return experiment.load_config(conftest.TINY_CONFIG,
                                conftest.tiny_overrides(records, **extra))



def test_backbone_initialised_from_checkpoint(shapes_records, tmp_path):
  config = _config(shapes_records)
  source = train.build_model(config)
  # Model Garden detection checkpoints expose `backbone`; classification
  # checkpoints nest it under `model`.
  det_path = tf.train.Checkpoint(backbone=source.backbone).write(
      str(tmp_path / 'det' / 'ckpt'))
  cls_path = tf.train.Checkpoint(model=tf.train.Checkpoint(
      backbone=source.backbone)).write(str(tmp_path / 'cls' / 'ckpt'))
  for path in (det_path, cls_path):
    target = train.build_model(config)
    train.restore_init_checkpoint(target, path, 'backbone')
    for a, b in zip(source.backbone.weights, target.backbone.weights):
      np.testing.assert_array_equal(a.numpy(), b.numpy())
    head_a = source.detection_head[0].weights[0].numpy()
    head_b = target.detection_head[0].weights[0].numpy()
    assert not np.array_equal(head_a, head_b)
  with pytest.raises(ValueError, match='no checkpoint'):
    train.restore_init_checkpoint(target, str(tmp_path / 'empty'), 'backbone')


def _printed(out: str, title: str) -> dict[str, float]:
  line = next(l for l in out.splitlines() if l.startswith(title))
  return {k: float(v) for k, v in
          (item.split('=') for item in line[len(title):].split())}


def test_evaluate_and_export_cli(shapes_records, tmp_path, capsys):
  """evaluate prints what pycocotools' COCOeval computes from the results
  JSON it writes; export writes versioned SavedModels with the signatures."""
  model_dir = str(tmp_path / 'model')
  overrides = conftest.tiny_overrides(shapes_records,
                                      **conftest.LEAN_TWO_STAGE)
  sets = sum([['--set', o] for o in overrides], [])
  # What evaluate and export read, without a training graph to trace.
  conftest.write_untrained_checkpoint(
      experiment.load_config(conftest.TINY_CONFIG, overrides), model_dir)
  results = str(tmp_path / 'results.json')
  # Score threshold 0: a 2-step model still returns its top detections.
  assert cli.main(['evaluate', '--config', conftest.TINY_CONFIG,
                   '--checkpoint', model_dir, '--results-json', results,
                   *sets, '--set', 'model.two_stage.detection_generator.'
                   'pre_nms_score_threshold=0.0', '--per-class',
                   '--confusion-matrix', str(tmp_path / 'confusion.png')]) == 0
  out = capsys.readouterr().out
  detections = json.load(open(results))
  per_class = json.load(open(str(tmp_path / 'results_per_class.json')))
  assert os.path.exists(str(tmp_path / 'confusion.csv'))
  assert detections and all('segmentation' in d for d in detections)
  gt = COCO(os.path.join(shapes_records, 'shapes_val-annotations.json'))
  for title, iou_type in (('box ', 'bbox'), ('mask', 'segm')):
    coco_eval = COCOeval(gt, gt.loadRes(results), iou_type)
    coco_eval.evaluate()
    coco_eval.accumulate()
    coco_eval.summarize()
    printed = _printed(out, title)
    for i, key in enumerate(('AP', 'AP50', 'AP75')):
      assert printed[key] == pytest.approx(max(coco_eval.stats[i], 0.0),
                                           abs=6e-5), (title, key)
    # evaluate --per-class: pycocotools' precision per category.
    prefix = 'mask_' if iou_type == 'segm' else ''
    for k, category_id in enumerate(coco_eval.params.catIds):
      values = coco_eval.eval['precision'][0, :, k, 0, -1]
      name = gt.cats[category_id]['name']
      assert per_class['classes'][name][prefix + 'AP50'] == pytest.approx(
          values[values > -1].mean()), (name, iou_type)
  # export as a command: the next free version (3 beside an existing 2).
  export_dir = str(tmp_path / 'export')
  os.makedirs(os.path.join(export_dir, '2'))
  assert cli.main(['export', '--config', conftest.TINY_CONFIG,
                   '--checkpoint', model_dir, '--out', export_dir, *sets]) == 0
  line = capsys.readouterr().out.strip().splitlines()[-1]
  assert line == f'exported {os.path.join(export_dir, "3")}'
  loaded = tf.saved_model.load(os.path.join(export_dir, '3'))
  assert set(loaded.signatures) == {'serving_default', 'image_bytes',
                                    'tf_example'}
  assert sorted(os.listdir(export_dir)) == ['2', '3']  # Nothing temporary.
  assert cli.main(['evaluate', '--config', conftest.TINY_CONFIG,
                   '--checkpoint', str(tmp_path / 'nothing'), *sets]) == 1
  # The metrics a config (or --metrics) names: proposal AR and VOC07 mAP.
  assert cli.main(['evaluate', '--config', conftest.TINY_CONFIG,
                   '--checkpoint', model_dir, '--metrics',
                   'proposal_recall,voc07', *sets]) == 0
  out = capsys.readouterr().out
  assert 'proposals AR@100=' in out and 'AR@1000=' in out
  assert 'VOC07 mAP@0.5=' in out and 'box  AP=' not in out
  # mIoU needs a semantic output, which this model lacks.
  assert cli.main(['evaluate', '--config', conftest.TINY_CONFIG,
                   '--checkpoint', model_dir, '--metrics', 'miou', *sets]) == 1
  assert 'miou needs a model with a semantic output' in capsys.readouterr().err



def test_mixed_bfloat16_trains_and_policy_is_restored(shapes_records,
                                                     tmp_path):
  overrides = conftest.tiny_overrides(
      shapes_records, **{'schedule.total_steps': 3,
                         'schedule.steps_per_epoch': 3,
                         'runtime.mixed_precision': 'mixed_bfloat16',
                         'runtime.strategy': 'one_device',
                         # bfloat16 is emulated on most CPUs: small images.
                         'train_data.parser.output_size': '[64, 96]'})
  config = experiment.load_config(conftest.TINY_CONFIG, overrides)
  result = train.train(config, str(tmp_path / 'model'), verbose=0)
  model = result['model']
  assert model.backbone.layers[2].compute_dtype == 'bfloat16'
  assert {v.dtype.name for v in model.trainable_variables} == {'float32'}
  assert all(math.isfinite(x) for x in result['history']['total_loss'])
  assert tf_keras.mixed_precision.global_policy().name == 'float32'
  # The optimizer's slots exist before the first step, so the train step is
  # traced once, not twice (a tf.function creating variables is retraced).
  assert result['trainer'].train_function.experimental_get_tracing_count() == 1

