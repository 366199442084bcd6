"""Evaluators given no detections at all: AP / AR 0 for images with ground
truth (not a crash, not NaN, not 'no result')."""

import numpy as np
import pytest

from tests.evaluation import test_coco
from tests.evaluation import test_recall
from tests.evaluation import test_voc
from tf_mtdet.evaluation import coco
from tf_mtdet.evaluation import recall
from tf_mtdet.evaluation import voc

pytestmark = test_coco.pytestmark


def test_coco_no_detections_gives_zero_ap(coco128_json, coco128_gt):
  ids = sorted(coco128_gt.getImgIds())[:8]
  for include_mask in (False, True):
    evaluator = coco.COCOEvaluator(coco128_json, include_mask=include_mask)
    batch = test_coco.make_batch(coco128_gt, ids, drop=set(ids),
                                 masks='box' if include_mask else None)
    assert not batch['num_detections'].any()
    evaluator.update_state(None, batch)
    metrics = evaluator.result()
    for name in ('AP', 'AP50', 'ARmax100') + (('mask_AP',) if include_mask
                                              else ()):
      assert metrics[name] == 0.0, (name, metrics[name])


def test_voc_no_detections_gives_zero_map(annotation_file_voc):
  for use_07 in (False, True):
    evaluator = voc.VOCMeanAPEvaluator(annotation_file_voc,
                                       use_07_metric=use_07)
    evaluator.update_state(None, test_voc.make_batch([]))
    metrics = evaluator.result()
    assert metrics['mAP@0.5'] == 0.0
    assert metrics['AP@0.5/cat'] == 0.0 and metrics['AP@0.5/dog'] == 0.0


def test_recall_no_proposals_gives_zero_ar(annotation_file_recall):
  evaluator = recall.ProposalRecallEvaluator(annotation_file_recall)
  batch = test_recall.proposals({1: [], 2: []})
  assert not np.asarray(batch['num_proposals']).any()
  evaluator.update_state(None, batch)
  metrics = evaluator.result()
  assert metrics['AR@100'] == 0.0 and metrics['AR@1000'] == 0.0


@pytest.fixture
def annotation_file_voc(write_coco_json):
  return test_voc.annotation_file.__wrapped__(write_coco_json)


@pytest.fixture
def annotation_file_recall(write_coco_json):
  return test_recall.annotation_file.__wrapped__(write_coco_json)
