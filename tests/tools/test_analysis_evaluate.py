"""evaluate's analysis on hand-written results files: per-class values
against pycocotools' precision array and the VOC evaluator, every confusion
matrix cell, the PR-curve picture, and the bad-input lines."""

import csv
import json
import os

import numpy as np
from pycocotools import cocoeval
from pycocotools import mask as mask_api
import pytest

from tf_mtdet import cli
from tf_mtdet.evaluation import utils as eval_utils
from tf_mtdet.evaluation import voc
from tf_mtdet.tools.analysis import confusion
from tf_mtdet.tools.analysis import per_class
from tf_mtdet.tools.analysis import results_file

# Two images, two classes. circle: 2 boxes (one found after a higher-scored
# false positive); square: 1 box found at IoU 0.72.
ANNOTATIONS = {
    'images': [{'id': 7, 'file_name': 'sub/a.jpg', 'height': 100,
                'width': 100},
               {'id': 9, 'file_name': 'b.jpg', 'height': 100, 'width': 100}],
    'categories': [{'id': 1, 'name': 'circle'}, {'id': 2, 'name': 'square'}],
    'annotations': [
        {'id': 1, 'image_id': 7, 'category_id': 1, 'bbox': [10, 40, 20, 20],
         'area': 400, 'iscrowd': 0},
        {'id': 2, 'image_id': 7, 'category_id': 2, 'bbox': [50, 50, 20, 20],
         'area': 400, 'iscrowd': 0},
        {'id': 3, 'image_id': 9, 'category_id': 1, 'bbox': [0, 0, 10, 10],
         'area': 100, 'iscrowd': 0}],
}
# By file name (predict's format) and by image id: the same detections.
RESULTS_BY_NAME = [
    {'file_name': 'a.jpg', 'image_id': 1, 'category_id': 1,
     'bbox': [10, 40, 20, 20], 'score': 0.9},
    {'file_name': 'b.jpg', 'image_id': 2, 'category_id': 1,
     'bbox': [60, 60, 20, 20], 'score': 0.95},
    {'file_name': 'a.jpg', 'image_id': 1, 'category_id': 2,
     'bbox': [50, 50, 20, 14.4], 'score': 0.8},
]
RESULTS_BY_ID = [dict({k: v for k, v in r.items() if k != 'file_name'},
                      image_id={'a.jpg': 7, 'b.jpg': 9}[r['file_name']])
                 for r in RESULTS_BY_NAME]


def _write(tmp_path, name, obj):
  path = str(tmp_path / name)
  with open(path, 'w') as f:
    json.dump(obj, f)
  return path


@pytest.fixture
def files(tmp_path):
  return (_write(tmp_path, 'annotations.json', ANNOTATIONS),
          _write(tmp_path, 'results.json', RESULTS_BY_NAME),
          _write(tmp_path, 'results_by_id.json', RESULTS_BY_ID))


def test_per_class_equals_pycocotools_precision_and_voc(files):
  annotations, by_name, _ = files
  scores = per_class.score(results_file.load(by_name, annotations))
  # pycocotools by hand: its precision array, area all, maxDets 100.
  gt = eval_utils.load_coco_groundtruth(annotations)
  dt = gt.loadRes([dict(r, id=i + 1) for i, r in enumerate(RESULTS_BY_ID)])
  evaluated = cocoeval.COCOeval(gt, dt, 'bbox')
  evaluated.evaluate()
  evaluated.accumulate()
  evaluated.summarize()
  precision = evaluated.eval['precision']
  for k, name in enumerate(['circle', 'square']):
    assert scores.table.value(name, 'AP') == pytest.approx(
        precision[:, :, k, 0, -1].mean())
    assert scores.table.value(name, 'AP50') == pytest.approx(
        precision[0, :, k, 0, -1].mean())
    assert scores.table.value(name, 'AP75') == pytest.approx(
        precision[5, :, k, 0, -1].mean())
  # By hand: circle's precision is 0.5 up to recall 0.5 (51 of COCO's 101
  # recall points) at every IoU; square is found at IoU 0.72: at 5 of the
  # 10 thresholds (0.50-0.70).
  assert scores.table.value('circle', 'AP') == pytest.approx(51 * 0.5 / 101)
  assert scores.table.value('square', 'AP') == pytest.approx(0.5)
  assert scores.table.value('square', 'AP50') == pytest.approx(1.0)
  assert scores.table.value('square', 'AP75') == pytest.approx(0.0)
  # VOC: all-point 0.5 * 0.5; VOC07: 6 of 11 recall points at 0.5.
  assert scores.table.value('circle', 'voc_AP@0.5') == pytest.approx(0.25)
  assert scores.table.value('circle', 'voc07_AP@0.5') == pytest.approx(
      6 * 0.5 / 11)
  evaluator = voc.VOCMeanAPEvaluator(annotations, need_rescale_bboxes=False)
  evaluator.update_state(None, {
      'source_id': np.array([7, 9]), 'num_detections': np.array([2, 1]),
      'detection_boxes': np.array([[[40, 10, 60, 30], [50, 50, 64.4, 70]],
                                   [[60, 60, 80, 80], [0, 0, 0, 0]]]),
      'detection_scores': np.array([[0.9, 0.8], [0.95, 0]]),
      'detection_classes': np.array([[1, 2], [1, 0]])})
  expected = evaluator.result()
  assert scores.table.value('circle', 'voc_AP@0.5') == pytest.approx(
      expected['AP@0.5/circle'])
  assert scores.table.value('square', 'voc_AP@0.5') == pytest.approx(
      expected['AP@0.5/square'])
  assert scores.metrics['AP'] == pytest.approx(evaluated.stats[0])


def test_file_name_and_image_id_score_the_same(files):
  annotations, by_name, by_id = files
  a = per_class.score(results_file.load(by_name, annotations))
  b = per_class.score(results_file.load(by_id, annotations))
  assert a.table.rows == b.table.rows


def test_image_confusion_pins_every_cell():
  # Classes 0, 1, 2. A (0) and E (1) overlap at IoU 0.82.
  gt = np.array([[0, 0, 10, 10], [20, 0, 10, 10], [40, 0, 10, 10],
                 [60, 0, 10, 10], [1, 0, 10, 10]], float)
  gt_classes = [0, 1, 2, 0, 1]
  dets = np.array([[0, 0, 10, 10],       # class 0 on A (and E)
                   [20, 0, 10, 10],      # class 2 on B: confused
                   [100, 100, 10, 10],   # class 1 on nothing: background FP
                   [40, 0, 10, 10]], float)  # class 2 on C, under threshold
  matrix = confusion.image_confusion(gt, gt_classes, dets, [0, 2, 1, 2],
                                     [0.9, 0.8, 0.7, 0.2], num_classes=3,
                                     score_threshold=0.3, iou_threshold=0.5)
  np.testing.assert_array_equal(matrix, [
      [1, 0, 0, 1],   # A found; D missed
      [1, 0, 1, 2],   # E hit by class 0, B by class 2; both missed
      [0, 0, 0, 1],   # C's detection is under the threshold: missed
      [0, 1, 0, 0]])  # one class-1 detection on no object


def test_cli_scores_results_file_and_writes_outputs(files, tmp_path, capsys):
  annotations, by_name, _ = files
  png = str(tmp_path / 'out' / 'confusion.png')
  curves = str(tmp_path / 'curves.png')
  assert cli.main(['evaluate', '--results-json', by_name, '--annotations',
                   annotations, '--per-class', '--confusion-matrix', png,
                   '--pr-curves', curves]) == 0
  out = capsys.readouterr().out
  assert 'box  AP=' in out and 'circle' in out
  with open(str(tmp_path / 'results_per_class.csv')) as f:
    rows = {r['class']: r for r in csv.DictReader(f)}
  assert float(rows['circle']['AP']) == pytest.approx(51 * 0.5 / 101)
  with open(str(tmp_path / 'results_per_class.json')) as f:
    assert json.load(f)['classes']['square']['AP50'] == pytest.approx(1.0)
  with open(str(tmp_path / 'out' / 'confusion.csv')) as f:
    cells = list(csv.reader(f))
  # circle: one found, one missed; the b.jpg detection hits nothing.
  assert cells[1] == ['circle', '1', '0', '1']
  assert cells[2] == ['square', '0', '1', '0']
  assert cells[3] == ['background', '1', '0', '0']
  for path in (png, curves):
    assert open(path, 'rb').read(8) == b'\x89PNG\r\n\x1a\n'


@pytest.mark.parametrize('entry, message', [
    ({'file_name': 'c.jpg', 'category_id': 1, 'bbox': [0, 0, 1, 1],
      'score': 1}, "entry 1: file_name 'c.jpg' is not an image of"),
    ({'image_id': 8, 'category_id': 1, 'bbox': [0, 0, 1, 1], 'score': 1},
     'entry 1: image_id 8 is not an image of'),
    ({'image_id': 7, 'category_id': 5, 'bbox': [0, 0, 1, 1], 'score': 1},
     'entry 1: category_id 5 is not a category of'),
    ({'image_id': 7, 'category_id': 1, 'score': 1}, 'entry 1: missing bbox'),
    ({'image_id': 7, 'category_id': 1, 'bbox': [0, 0, 1, 1], 'score': 'hi'},
     "entry 1: score 'hi' is not a number"),
])
def test_bad_results_entry_is_one_line(files, tmp_path, capsys, entry,
                                       message):
  annotations, _, _ = files
  bad = _write(tmp_path, 'bad.json', [RESULTS_BY_ID[0], entry])
  png = str(tmp_path / 'cm.png')
  assert cli.main(['evaluate', '--results-json', bad, '--annotations',
                   annotations, '--confusion-matrix', png]) == 1
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith('tf-mtdet evaluate: error: ')
  assert message in err[0] and bad in err[0]
  assert not os.path.exists(png)


@pytest.mark.parametrize('argv, message', [
    (['--results-json', 'missing.json', '--annotations', '{a}'],
     'missing.json: results file not found'),
    (['--results-json', '{r}'], 'needs --annotations'),
    (['--annotations', '{a}'], 'give --checkpoint'),
    (['--results-json', '{r}', '--annotations', '{a}', '--confusion-matrix',
      'cm.jpg'], '--confusion-matrix cm.jpg: the picture is written as PNG'),
])
def test_bad_evaluate_arguments_are_one_line(files, capsys, argv, message):
  annotations, by_name, _ = files
  argv = [a.format(a=annotations, r=by_name) for a in argv]
  assert cli.main(['evaluate', *argv]) == 1
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and message in err[0], err


def test_semantic_iou_joins_by_category_id():
  table = per_class.build_table({1: 'circle', 2: 'square'},
                                [{1: {'AP': 0.5}, 2: {'AP': 0.25}}])
  per_class.merge_extra(table, {'IoU': {'0': 0.9, '1': 0.5, '2': 0.75}},
                        {1: 'circle', 2: 'square'})
  assert table.columns == ['AP', 'IoU']
  assert table.rows == {'circle': {'AP': 0.5, 'IoU': 0.5},
                        'square': {'AP': 0.25, 'IoU': 0.75},
                        'background': {'IoU': 0.9}}
  assert 'n/a' in table.format().splitlines()[-1]  # background has no AP


def test_mask_ap_per_class_from_rle_results(tmp_path):
  annotations = json.loads(json.dumps(ANNOTATIONS))
  for ann in annotations['annotations']:
    x, y, w, h = ann['bbox']
    ann['segmentation'] = [[x, y, x + w, y, x + w, y + h, x, y + h]]
  results = []
  for entry in RESULTS_BY_ID:
    mask = np.zeros([100, 100, 1], np.uint8)
    x, y, w, h = (int(round(v)) for v in entry['bbox'])
    mask[y:y + h, x:x + w] = 1
    rle = mask_api.encode(np.asfortranarray(mask))[0]
    results.append(dict(entry, segmentation={
        'size': rle['size'], 'counts': rle['counts'].decode('ascii')}))
  scored = results_file.load(_write(tmp_path, 'r.json', results),
                             _write(tmp_path, 'a.json', annotations))
  assert scored.has_masks
  table = per_class.score(scored).table
  assert table.columns[:6] == ['AP', 'AP50', 'AP75', 'mask_AP', 'mask_AP50',
                               'mask_AP75']
  # The circle's masks are its boxes: the same precision as its box AP.
  assert table.value('circle', 'mask_AP') == pytest.approx(51 * 0.5 / 101)
  assert table.value('square', 'mask_AP50') == pytest.approx(1.0)
