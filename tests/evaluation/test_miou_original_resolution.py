"""mIoU is scored at the original image resolution: the prediction with the
input padding removed, scaled back, against the unresized ground truth."""

import numpy as np
import pytest
import tensorflow as tf

from tf_mtdet.data import augment
from tf_mtdet.config import data as data_config
from tf_mtdet.evaluation import metrics
from tf_mtdet.evaluation import segmentation


def _multi_evaluator():
  return metrics.MultiEvaluator(
      {'miou': segmentation.SemanticIoUEvaluator(3, ignore_label=255)})


def test_miou_at_original_resolution_by_hand():
  # A 4x6 image shown at half size (2x3) in a padded 4x4 input.
  info = np.array([[[4, 6], [2, 3], [0.5, 0.5], [0, 0]]], np.float32)
  predicted = np.array([[[1, 2, 2, 1],
                         [1, 1, 2, 1],
                         [1, 1, 1, 1],    # padding: predicted class 1,
                         [1, 1, 1, 1]]])  # never scored
  truth = np.full([1, 6, 8], 255)          # padded to semantic_eval_max_size
  truth[0, :4, :6] = [[1, 1, 2, 2, 2, 2],
                      [1, 1, 2, 2, 0, 0],
                      [1, 1, 1, 1, 0, 0],
                      [1, 1, 1, 1, 0, 0]]
  evaluator = _multi_evaluator()
  evaluator.update_state({'gt_semantic_original': truth},
                         {'semantic': predicted, 'image_info': info})
  # Each input pixel covers 2x2 original pixels:
  #   1 2 2     -> 1 1 2 2 2 2 / 1 1 2 2 2 2 / 1 1 1 1 2 2 / 1 1 1 1 2 2
  #   1 1 2
  # class 0: TP 0, union 6 (its 6 pixels predicted 2) -> 0
  # class 1: TP 12, truth 12, predicted 12 -> 1
  # class 2: TP 6, truth 6 + predicted 12 - 6 = 12 -> 0.5
  result = evaluator.result()
  assert result['mIoU'] == pytest.approx((0 + 1 + 0.5) / 3)
  assert result['pixel_accuracy'] == pytest.approx(18 / 24)


def test_an_enlarged_image_is_scored_at_its_own_pixels():
  """A 2x2 image shown at 4x4: each original pixel takes the prediction at
  its centre (input pixels 1 and 3); only original-resolution keys."""
  evaluator = _multi_evaluator()
  info = np.array([[[2, 2], [4, 4], [2, 2], [0, 0]]], np.float32)
  predicted = np.array([[[0, 0, 1, 1], [0, 0, 1, 1],
                         [2, 2, 2, 2], [2, 2, 2, 2]]])
  truth = np.full([1, 3, 3], 255)
  truth[0, :2, :2] = [[0, 1], [2, 2]]
  evaluator.update_state({'gt_semantic_original': truth},
                         {'semantic': predicted, 'image_info': info})
  result = evaluator.result()
  assert result['mIoU'] == 1.0 and result['pixel_accuracy'] == 1.0
  assert not any('input' in k for k in result)


def test_eval_parser_pads_the_original_map_and_names_the_field_when_small():
  cfg = data_config.Augmentation(output_size=[4, 4],
                                 semantic_eval_max_size=[3, 5])
  augmenter = augment.Augmenter(cfg, stride=1, needs=[augment.SEMANTIC])
  semantic = tf.constant([[1, 2, 3, 4], [5, 6, 7, 8]], tf.int32)
  padded = augmenter.pad_semantic_original(semantic, tf.constant('img'))
  np.testing.assert_array_equal(padded.numpy(), [[1, 2, 3, 4, 255],
                                                 [5, 6, 7, 8, 255],
                                                 [255] * 5])
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match='semantic_eval_max_size'):
    augmenter.pad_semantic_original(tf.zeros([4, 4], tf.int32),
                                    tf.constant('img'))
