"""VOC `difficult` end to end: XML -> shard -> our decoder -> a training batch
(dropped) and -> the VOC evaluator (ignored)."""

import json

import numpy as np
import pytest

from tests.data import test_builder
from tests.data import test_pipeline
from tf_mtdet.config import data as data_config
from tf_mtdet.data import pipeline
from tf_mtdet.evaluation import voc

CAT, DOG = 1, 2
# (name, difficult, (xmin, ymin, xmax, ymax)) in VOC's 1-based pixels.
OBJECTS = [('cat', 0, (1, 1, 20, 20)), ('dog', 0, (30, 5, 55, 30)),
           ('cat', 1, (5, 24, 24, 38))]


@pytest.fixture(scope='module')
def voc_shard(tmp_path_factory):
  tmp = tmp_path_factory.mktemp('voc')
  test_builder._write_voc(tmp / 'voc', OBJECTS)  # pylint: disable=protected-access
  prefix = str(tmp / 'out' / 'voc')
  assert test_builder._build(  # pylint: disable=protected-access
      '--format', 'voc', '--voc-root', str(tmp / 'voc'), '--classes',
      'cat,dog', '--output', prefix, '--box-masks') == 0
  return prefix


def test_difficult_is_dropped_from_training_batches(voc_shard):
  cfg = data_config.DataConfig(input_path=voc_shard + '-*.tfrecord',
                               global_batch_size=1, is_training=True)
  cfg.parser.output_size = [40, 60]
  cfg.parser.aug_rand_hflip = False
  parser = test_pipeline._parser(cfg, with_semantic=False)  # pylint: disable=protected-access
  _, labels = next(iter(pipeline.dataset(cfg, parser)))
  classes = labels['gt_classes'].numpy()[0]
  assert list(classes[classes > 0]) == [CAT, DOG]
  # The kept boxes are the two easy ones, in [ymin, xmin, ymax, xmax] pixels.
  boxes = labels['gt_boxes'].numpy()[0][classes > 0]
  np.testing.assert_allclose(boxes, [[0, 0, 20, 20], [4, 29, 30, 55]],
                             atol=0.5)
  # Evaluation keeps all three (the VOC evaluator reads the flag from the
  # ground-truth JSON and ignores the difficult one).
  cfg.is_training = False
  eval_parser = test_pipeline._parser(cfg, with_semantic=False)  # pylint: disable=protected-access
  _, labels = next(iter(pipeline.dataset(cfg, eval_parser)))
  assert int(labels['groundtruths']['num_detections'][0]) == 3


def test_difficult_is_ignored_by_the_voc_evaluator(voc_shard):
  annotations = voc_shard + '-annotations.json'
  gt = json.load(open(annotations))
  assert [a.get('difficult', 0) for a in gt['annotations']] == [0, 0, 1]
  # Detections on the two easy boxes only: the difficult cat is not a miss.
  image_info = np.array([[[40, 60], [40, 60], [1, 1], [0, 0]]], np.float32)
  batch = {
      'source_id': np.array([gt['images'][0]['id']]),
      'image_info': image_info,
      'num_detections': np.array([2]),
      'detection_boxes': np.array([[[0, 0, 20, 20], [4, 29, 30, 55]]],
                                  np.float32),
      'detection_scores': np.array([[0.9, 0.8]], np.float32),
      'detection_classes': np.array([[CAT, DOG]], np.int32),
  }
  ignored = voc.VOCMeanAPEvaluator(annotations)
  ignored.update_state(None, batch)
  assert ignored.result()['AP@0.5/cat'] == pytest.approx(1.0)
  counted = voc.VOCMeanAPEvaluator(annotations, ignore_difficult=False)
  counted.update_state(None, batch)
  assert counted.result()['AP@0.5/cat'] == pytest.approx(0.5)
