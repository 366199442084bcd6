"""DATNet Table 7: the RoI and dense parts of Light and Heavy (R50, 81
classes) built from the shipped configs, against the closed-form sizes the
README's table lists, and every row's total within 2% of the paper's. The
body (ResNet-50: 23,508,032 = torchvision's without the classifier; FPN; RPN)
is Mask R-CNN's, whose full 81-class count (45,002,549 by
`profiling.count_parameters`; tests/training/test_model.py checks it against
the paper's 44.4M) the totals start from: building the full models here
would cost a minute of CPU each (`tf-mtdet profile --json` gives the same
totals: README)."""

import os

import pytest
import tensorflow as tf

from tests import conftest as root
from tf_mtdet.config import experiment
from tf_mtdet.modeling import factory
from tf_mtdet.modeling import registry
from official.vision.modeling.decoders import factory as decoder_factory

CONFIGS = os.path.join(root.REPO_ROOT, 'configs', 'datnet')
C = 81
F = 256
CONV3 = 9 * F * F + F
BN = 2 * F
# Dense heads (Sec. 3.3): P3..P6 reach stride 4 through 1 + 2 + 3 + 4 conv3x3
# stages, 2 convs after the sum, a conv3x3 classifier; no normalisation.
TRUNK = (1 + 2 + 3 + 4) * CONV3 + 2 * CONV3
DT_HEAD = TRUNK + 9 * F * 4 + 4
SEMANTIC_HEAD = TRUNK + 9 * F * C + C
SE = 1024 * 64 + 64 + 64 * 1024 + 1024  # MSPwA's max-pool SE, r = 16


def _bottleneck(cin, f, projection):
  convs = cin * f + 9 * f * f + f * 4 * f
  bns = 2 * (f + f + 4 * f)
  shortcut = cin * 4 * f + 2 * 4 * f if projection else 0
  return convs + bns + shortcut


RES5 = _bottleneck(1024, 512, True) + 2 * _bottleneck(2048, 512, False)
CLS_BOX = 2048 * C + C + 2048 * 4 * C + 4 * C
# maskrcnn-benchmark's mask heads (`conv_deconv`, no norm): Light 4 conv3x3
# (the first on MSPwA's 1024 channels) + deconv + 1x1; Heavy deconv + 1x1.
LIGHT_MASK = (1024 * 9 * F + F) + 3 * CONV3 + (4 * F * F + F) + (F * C + C)
HEAVY_MASK = (4 * 2048 * F + F) + (F * C + C)  # (Fig. 4)
# Body = ResNet-50 + FPN + RPN head, as DATNet's rows build them (no norm):
# maskrcnn-benchmark's FPN (`plain_fpn`: 4 laterals + 4 conv3x3, P6 a max
# pool; Model Garden's FPN is 3,937,024) and RPN head (conv3x3, 3 scores and
# 12 box deltas per cell; Model Garden's adds 5 x 512 norm weights).
PLAIN_FPN = (256 + 512 + 1024 + 2048) * F + 4 * F + 4 * CONV3
RPN = CONV3 + (F * 3 + 3) + (F * 12 + 12)
BODY = 23_508_032 + PLAIN_FPN + RPN
TWO_FC = (F * 49 * 1024 + 1024) + (1024 * 1024 + 1024) + (1024 * C + C) + (
    1024 * 4 * C + 4 * C)
MR_MASK = 256 * 9 * F + F + 3 * CONV3 + (4 * F * F + F) + (F * C + C)
MASK_RCNN = BODY + TWO_FC + MR_MASK  # DATNet's baseline row
# ../mask_rcnn/mask_rcnn_x101_32x8d_fpn_1x_coco.yaml (Model Garden's FPN).
MASK_RCNN_X101 = 45_002_549 + 86_742_336 - 23_508_032  # 108,236,853
# `tf-mtdet profile --json` totals (README Table 7), by part below.
LIGHT_R50 = 62_276_106
HEAVY_R50 = 59_849_162


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
  features['6'] = tf.zeros([1, 1, 1, F])
  for part in cfg.dense_aux_heads:
    head = registry.build('dense_aux_head', part.type, part.get(), cfg)
    head(features)
    total += _count(head)
  return total


def test_light_r50_parts():
  cfg = _parts('datnet_light_r50_fpn_1x_coco.yaml')
  fpn = decoder_factory.build_decoder(
      {str(l): tf.TensorShape([None, 64 // 2**l, 64 // 2**l, 64 * 2**l])
       for l in range(2, 6)}, cfg)
  assert _count(fpn) == PLAIN_FPN == 3_344_384
  baseline = _parts('mask_rcnn_r50_fpn_1x_coco.yaml')
  mask = registry.build('mask_head', 'conv_deconv', baseline, None)
  mask([tf.zeros([1, 1, 14, 14, 256]), tf.zeros([1, 1], tf.int32)])
  assert _count(mask) == MR_MASK
  rpn = factory.build_rpn_head(baseline, None)
  rpn({str(l): tf.zeros([1, 2, 2, F]) for l in range(2, 7)})
  assert _count(rpn) == RPN
  box = registry.build('box_head', 'fc', baseline, None)
  box(tf.zeros([1, 1, 7, 7, F]))
  assert _count(box) == TWO_FC
  assert MASK_RCNN == 44_400_693  # the README's Table 7 figure (profiling)
  assert _dense_heads(cfg) == DT_HEAD + SEMANTIC_HEAD == 14_357_845
  box = registry.build('box_head', 'res5', cfg, None)
  box(tf.zeros([1, 1, 7, 7, 1024]))
  assert _count(box) == RES5 + CLS_BOX
  pooler = registry.build('roi_pooler', 'multi_scale_attention', cfg)
  pooler.attention(tf.zeros([1, 1, 7, 7, 1024]))
  assert _count(pooler) == SE
  mask = registry.build('mask_head', 'conv_deconv', cfg, None)
  mask([tf.zeros([1, 1, 14, 14, 1024]), tf.zeros([1, 1], tf.int32)])
  assert _count(mask) == LIGHT_MASK
  light = (BODY + DT_HEAD + SEMANTIC_HEAD + 2 * SE +
           RES5 + CLS_BOX + LIGHT_MASK)
  assert light == LIGHT_R50  # the README's Table 7 figure (profiling)
  assert abs(light / 62.3e6 - 1) < 0.02


def test_heavy_r50_parts():
  cfg = _parts('datnet_heavy_r50_fpn_1x_coco.yaml')
  assert _dense_heads(cfg) == DT_HEAD + SEMANTIC_HEAD
  trunk = registry.build('roi_refinement', 'res5', cfg)
  trunk(tf.zeros([1, 1, 14, 14, 1024]))
  assert _count(trunk) == RES5
  box = registry.build('box_head', 'avg_pool', cfg, None)
  box(tf.zeros([1, 1, 7, 7, 2048]))
  assert _count(box) == CLS_BOX
  mask = registry.build('mask_head', 'conv_deconv', cfg, None)
  logits = mask([tf.zeros([1, 1, 7, 7, 2048]), tf.zeros([1, 1], tf.int32)])
  assert logits.shape == (1, 1, 14, 14)
  assert _count(mask) == HEAVY_MASK
  heavy = (BODY + DT_HEAD + SEMANTIC_HEAD + SE + RES5 +
           CLS_BOX + HEAVY_MASK)
  assert heavy == HEAVY_R50
  assert abs(heavy / 59.9e6 - 1) < 0.02


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
  # Light / Heavy X101 (README Table 7).
  assert LIGHT_R50 + delta == 139_291_402
  assert HEAVY_R50 + delta == 136_864_458


@pytest.mark.parametrize('ours, paper', [
    (MASK_RCNN, 44.4e6), (LIGHT_R50, 62.3e6), (HEAVY_R50, 59.9e6),
    (MASK_RCNN_X101, 107.4e6), (139_291_402, 139.2e6),
    (136_864_458, 136.8e6)])
def test_every_table_7_row_within_two_percent(ours, paper):
  assert abs(ours / paper - 1) < 0.02
