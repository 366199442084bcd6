"""Tests for tf_mtdet.evaluation.coco on the coco128 ground truth."""

import json
import os

import cv2
import numpy as np
import pytest
import tensorflow as tf

from tf_mtdet.evaluation import coco

# pycocotools' annToMask trips a numpy 2 copy-keyword deprecation warning.
pytestmark = pytest.mark.filterwarnings(
    'ignore:__array__ implementation:DeprecationWarning')

BATCH_SIZE = 4
# Padding rows (beyond num_detections) get a real class and a higher score
# than the real detections, so counting them would rank confident false
# positives first and lower AP.
PAD_CLASS = 1
PAD_SCORE = 0.99
SCORE = 0.9


@pytest.fixture(scope='module')
def image_ids(coco128_gt):
  return sorted(coco128_gt.getImgIds())


def _instances(gt, img_id):
  """Non-crowd annotations of one image."""
  return [a for a in gt.loadAnns(gt.getAnnIds(imgIds=[img_id]))
          if not a['iscrowd']]


def make_batch(gt, ids, scale=1.0, jitter=0.0, rng=None, masks=None,
               mask_size=28, drop=()):
  """Ground truth of `ids` as a batch of Model Garden style predictions.

  Args:
    gt: pycocotools COCO.
    ids: image ids of the batch.
    scale: boxes are given in an image resized by `scale` (image_info says
      so); 1.0 is original pixels.
    jitter: std of box shifts as a fraction of box width/height.
    rng: numpy Generator for the jitter.
    masks: None, 'image' (full-image masks, padded to the batch maximum
      size), or 'box' (per-box masks of `mask_size`).
    mask_size: per-box mask resolution.
    drop: image ids whose detections are all left out (num_detections 0).

  Returns:
    The predictions dict.
  """
  anns = [[] if i in drop else _instances(gt, i) for i in ids]
  batch = len(ids)
  num = max([len(a) for a in anns] + [1]) + 1  # >= 1 padding row per image.
  height = max(gt.imgs[i]['height'] for i in ids)
  width = max(gt.imgs[i]['width'] for i in ids)
  boxes = np.zeros([batch, num, 4], np.float32)
  scores = np.full([batch, num], PAD_SCORE, np.float32)
  classes = np.full([batch, num], PAD_CLASS, np.int32)
  image_info = np.zeros([batch, 4, 2], np.float32)
  if masks == 'image':
    mask_array = np.zeros([batch, num, height, width], np.uint8)
  elif masks == 'box':
    mask_array = np.zeros([batch, num, mask_size, mask_size], np.float32)
  for j, (img_id, img_anns) in enumerate(zip(ids, anns)):
    h, w = gt.imgs[img_id]['height'], gt.imgs[img_id]['width']
    image_info[j] = [[h, w], [h * scale, w * scale], [scale, scale], [0, 0]]
    for k, ann in enumerate(img_anns):
      x, y, bw, bh = ann['bbox']
      if jitter:
        x += rng.normal() * jitter * bw
        y += rng.normal() * jitter * bh
      boxes[j, k] = np.array([y, x, y + bh, x + bw]) * scale
      scores[j, k] = SCORE
      classes[j, k] = ann['category_id']
      if masks == 'image':
        mask_array[j, k, :h, :w] = gt.annToMask(ann)
      elif masks == 'box':
        x0, y0 = int(np.floor(x)), int(np.floor(y))
        x1, y1 = int(np.ceil(x + bw)), int(np.ceil(y + bh))
        crop = gt.annToMask(ann)[y0:y1, x0:x1].astype(np.float32)
        mask_array[j, k] = cv2.resize(crop, (mask_size, mask_size))
  predictions = {
      'source_id': np.array(ids, np.int64),
      'image_info': image_info,
      'num_detections': np.array([len(a) for a in anns], np.int32),
      'detection_boxes': boxes,
      'detection_scores': scores,
      'detection_classes': classes,
  }
  if masks:
    predictions['detection_masks'] = mask_array
  return predictions


def run(evaluator, gt, ids, **kwargs):
  for start in range(0, len(ids), BATCH_SIZE):
    evaluator.update_state(None, make_batch(gt, ids[start:start + BATCH_SIZE],
                                            **kwargs))
  return evaluator.result()


def test_groundtruth_with_full_image_masks_gives_ap_one(
    coco128_json, coco128_gt, image_ids):
  evaluator = coco.COCOEvaluator(coco128_json, include_mask=True)
  for start in range(0, len(image_ids), BATCH_SIZE):
    batch = make_batch(coco128_gt, image_ids[start:start + BATCH_SIZE],
                       masks='image')
    if start % (2 * BATCH_SIZE):
      # Tensors are accepted as well as numpy arrays.
      batch = {k: tf.constant(v) for k, v in batch.items()}
    evaluator.update_state(None, batch)
  metrics = evaluator.result()
  for name in ('AP', 'AP50', 'AP75', 'APs', 'APm', 'APl', 'ARmax100',
               'mask_AP', 'mask_AP50', 'mask_AP75', 'mask_APs', 'mask_APm',
               'mask_APl', 'mask_ARmax100'):
    assert metrics[name] == pytest.approx(1.0), name
  assert all(isinstance(v, float) for v in metrics.values())
  # result() resets: nothing is left for the next evaluation.
  assert evaluator.image_ids == [] and evaluator.coco_predictions == []


def test_jittered_boxes_lower_ap(coco128_json, coco128_gt, image_ids):
  exact = run(coco.COCOEvaluator(coco128_json), coco128_gt, image_ids)
  jittered = run(coco.COCOEvaluator(coco128_json), coco128_gt, image_ids,
                 jitter=0.15, rng=np.random.default_rng(0))
  assert exact['AP'] == pytest.approx(1.0)
  assert jittered['AP'] < 0.8
  # Strict thresholds suffer more than the loose one.
  assert jittered['AP75'] < jittered['AP50'] < 1.0


def test_image_info_rescale_matches_original_pixels(
    coco128_json, coco128_gt, image_ids):
  ids = image_ids[:48]
  original = run(coco.COCOEvaluator(coco128_json, need_rescale_bboxes=False),
                 coco128_gt, ids, jitter=0.1, rng=np.random.default_rng(1))
  resized = run(coco.COCOEvaluator(coco128_json, need_rescale_bboxes=True),
                coco128_gt, ids, scale=0.5, jitter=0.1,
                rng=np.random.default_rng(1))
  assert 0.2 < original['AP'] < 0.95  # Jitter keeps it off the trivial 1.0.
  for name, value in original.items():
    assert resized[name] == pytest.approx(value, abs=1e-9), name
  # Without rescaling, boxes in the 0.5x frame are simply wrong.
  wrong = run(coco.COCOEvaluator(coco128_json, need_rescale_bboxes=False),
              coco128_gt, ids, scale=0.5)
  assert wrong['AP'] < 0.2


def test_only_seen_images_are_evaluated_including_empty_ones(
    coco128_json, coco128_gt, image_ids):
  ids = image_ids[:12]
  assert run(coco.COCOEvaluator(coco128_json), coco128_gt, ids)['AP'] == (
      pytest.approx(1.0))
  # An image with ground truth but no detections still counts (misses).
  with_gt = [i for i in ids if _instances(coco128_gt, i)]
  metrics = run(coco.COCOEvaluator(coco128_json), coco128_gt, ids,
                drop={with_gt[0]})
  assert metrics['AP'] < 1.0
  assert metrics['ARmax100'] < 1.0


def test_per_box_masks_are_pasted(coco128_json, coco128_gt, image_ids):
  evaluator = coco.COCOEvaluator(coco128_json, include_mask=True,
                                 per_category_metrics=True)
  metrics = run(evaluator, coco128_gt, image_ids[:24], masks='box')
  assert metrics['AP'] == pytest.approx(1.0)
  # 28x28 masks resampled into the box lose detail but overlap well.
  assert metrics['mask_AP50'] > 0.9
  assert 0.5 < metrics['mask_AP'] < 1.0
  assert metrics['AP/person'] == pytest.approx(1.0)
  assert 'mask_AP/person' in metrics


def test_results_json_loads_with_coco_loadres(
    coco128_json, coco128_gt, image_ids, tmp_path):
  ids = image_ids[:8]
  path = os.path.join(str(tmp_path), 'out', 'results.json')
  evaluator = coco.COCOEvaluator(coco128_json, include_mask=True,
                                 results_path=path)
  for start in range(0, len(ids), BATCH_SIZE):
    evaluator.update_state(None, make_batch(
        coco128_gt, ids[start:start + BATCH_SIZE], masks='image'))
  evaluator.write_results_json(path)
  with open(path) as f:
    results = json.load(f)
  num_instances = sum(len(_instances(coco128_gt, i)) for i in ids)
  assert len(results) == num_instances
  first = results[0]
  assert set(first) == {'image_id', 'category_id', 'bbox', 'score',
                        'segmentation'}
  assert isinstance(first['segmentation']['counts'], str)
  loaded = coco128_gt.loadRes(path)
  assert len(loaded.getAnnIds()) == num_instances
  assert {a['image_id'] for a in loaded.anns.values()} <= set(ids)

  os.remove(path)
  assert evaluator.result()['mask_AP'] == pytest.approx(1.0)
  # result() rewrites the file through `results_path`; no temporary files
  # are left next to it.
  assert os.listdir(os.path.dirname(path)) == ['results.json']
  assert len(coco128_gt.loadRes(path).getAnnIds()) == num_instances


def test_unknown_image_id_and_missing_field_raise(coco128_json, coco128_gt,
                                                  image_ids):
  evaluator = coco.COCOEvaluator(coco128_json)
  batch = make_batch(coco128_gt, image_ids[:2])
  bad = dict(batch, source_id=np.array([-5, image_ids[0]]))
  with pytest.raises(ValueError, match='not in the annotation file'):
    evaluator.update_state(None, bad)
  missing = {k: v for k, v in batch.items() if k != 'image_info'}
  with pytest.raises(ValueError, match='image_info'):
    evaluator.update_state(None, missing)
