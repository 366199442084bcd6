"""DATNet Table 7: the RoI and dense parts of Light and Heavy (R50, 81
classes) built from the shipped configs, against the closed-form sizes the
README's table lists. The body (ResNet-50: 23,508,032 = torchvision's without
the classifier; FPN; RPN) is Mask R-CNN's, whose full 81-class count
(45,002,549 by `profiling.count_parameters`; tests/training/test_model.py
checks it against the paper's 44.4M) the totals start from: building the
full models here would cost a minute of CPU each."""

import os

import pytest
import tensorflow as tf

from tests import conftest as root
from tf_mtdet.config import experiment
from tf_mtdet.modeling import factory  # noqa: F401  # registers the parts
from tf_mtdet.modeling import registry

CONFIGS = os.path.join(root.REPO_ROOT, 'configs', 'datnet')
C = 81
F = 256
CONV3 = 9 * F * F + F
BN = 2 * F
# Dense heads: 4 level convs + BN, 2 fused convs, a 1x1 classifier.
TRUNK = 4 * (CONV3 + BN) + 2 * CONV3
DT_HEAD = TRUNK + F * 4 + 4
SEMANTIC_HEAD = TRUNK + F * C + C
SE = 1024 * 64 + 64 + 64 * 1024 + 1024  # MSPwA's max-pool SE, r = 16


def _bottleneck(cin, f, projection):
  convs = cin * f + 9 * f * f + f * 4 * f
  bns = 2 * (f + f + 4 * f)
  shortcut = cin * 4 * f + 2 * 4 * f if projection else 0
  return convs + bns + shortcut


RES5 = _bottleneck(1024, 512, True) + 2 * _bottleneck(2048, 512, False)
CLS_BOX = 2048 * C + C + 2048 * 4 * C + 4 * C
LIGHT_MASK = ((1024 * 9 * F + F) + 3 * CONV3 + 4 * BN +   # 4 convs + BN
              (4 * F * F + F) + BN + (F * C + C))        # deconv + BN, 1x1
HEAVY_MASK = (4 * 2048 * F + F) + 2 * CONV3 + (F * C + C)
# Mask R-CNN R50-FPN at 81 classes and its 2fc box / 4conv mask heads,
# which DATNet replaces (the README's table).
MASK_RCNN = 45_002_549
MR_BOX_MASK = 14_314_901 + 2_646_097  # 2fc box head + 4conv mask head


def _count(layer) -> int:
  # Parameters, frozen ones too (the paper's backbone BN and stem are).
  return sum(w.shape.num_elements() for w in layer.weights if w.trainable)


def _parts(name):
  config = experiment.load_config(os.path.join(CONFIGS, name),
                                  ['model.two_stage.num_classes=81'])
  return config.model.two_stage


def _dense_heads(cfg) -> int:
  total = 0
  features = {str(l): tf.zeros([1, 64 // 2**l, 64 // 2**l, F])
              for l in range(2, 6)}
  for part in cfg.dense_aux_heads:
    head = registry.build('dense_aux_head', part.type, part.get(), cfg)
    head(features)
    total += _count(head)
  return total


def test_light_r50_parts():
  cfg = _parts('datnet_light_r50_fpn_1x_coco.yaml')
  assert _dense_heads(cfg) == DT_HEAD + SEMANTIC_HEAD == 7_106_901
  box = registry.build('box_head', 'res5', cfg, None)
  box(tf.zeros([1, 1, 7, 7, 1024]))
  assert _count(box) == RES5 + CLS_BOX
  pooler = registry.build('roi_pooler', 'multi_scale_attention', cfg)
  pooler.attention(tf.zeros([1, 1, 7, 7, 1024]))
  assert _count(pooler) == SE
  mask = registry.build('mask_head', 'fcn', cfg, None)
  mask([tf.zeros([1, 1, 14, 14, 1024]), tf.zeros([1, 1], tf.int32)])
  assert _count(mask) == LIGHT_MASK
  light = (MASK_RCNN - MR_BOX_MASK + DT_HEAD + SEMANTIC_HEAD + 2 * SE +
           RES5 + CLS_BOX + LIGHT_MASK)
  assert light == 55_622_922  # the README's Table 7 figure (profiling)
  # 10.7% under the paper's 62.3M: the README explains it part by part.
  assert light / 62.3e6 == pytest.approx(0.893, abs=0.001)


def test_heavy_r50_parts():
  cfg = _parts('datnet_heavy_r50_fpn_1x_coco.yaml')
  assert _dense_heads(cfg) == DT_HEAD + SEMANTIC_HEAD
  trunk = registry.build('roi_refinement', 'res5', cfg)
  trunk(tf.zeros([1, 1, 14, 14, 1024]))
  assert _count(trunk) == RES5
  box = registry.build('box_head', 'avg_pool', cfg, None)
  box(tf.zeros([1, 1, 7, 7, 2048]))
  assert _count(box) == CLS_BOX
  mask = registry.build('mask_head', 'deconv_conv', cfg, None)
  logits = mask([tf.zeros([1, 1, 7, 7, 2048]), tf.zeros([1, 1], tf.int32)])
  assert logits.shape == (1, 1, 14, 14)
  assert _count(mask) == HEAVY_MASK
  heavy = (MASK_RCNN - MR_BOX_MASK + DT_HEAD + SEMANTIC_HEAD + SE + RES5 +
           CLS_BOX + HEAVY_MASK)
  assert heavy == 54_373_578
  assert heavy / 59.9e6 == pytest.approx(0.908, abs=0.001)


def _resnext_block(cin, width, out, projection):
  convs = cin * width + 9 * (width // 32) * width + width * out
  bns = 2 * (width + width + out)
  shortcut = cin * out + 2 * out if projection else 0
  return convs + bns + shortcut


def test_x101_heads_use_a_resnext_res5():
  # The paper's X101 - R50 difference is 76.9M for Light and for Heavy: the
  # backbone's 63.2M (86,742,336 - 23,508,032) plus a ResNeXt res5 head.
  cfg = _parts('datnet_light_x101_32x8d_fpn_1x_coco.yaml')
  box = registry.build('box_head', 'res5', cfg, None)
  box(tf.zeros([1, 1, 7, 7, 1024]))
  res5x = (_resnext_block(1024, 2048, 2048, True) +
           2 * _resnext_block(2048, 2048, 2048, False))
  assert _count(box.res5) == res5x
  delta = (86_742_336 - 23_508_032) + res5x - RES5
  assert delta / 1e6 == pytest.approx(76.9, abs=0.15)
  # Light / Heavy X101 (README Table 7): 132.64M / 131.39M.
  assert 55_622_922 + delta == 132_638_218
  assert 54_373_578 + delta == 131_388_874
