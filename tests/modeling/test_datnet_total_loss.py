"""The two-stage family's total loss for DATNet (Eqn. 3: L = L_maskrcnn +
w1 L_DT + w2 L_seg) by hand: every configured weight reaches its term and
`model_loss = loss_weight * sum(weight_i * L_i)`."""

import dataclasses
import os

import numpy as np
import tensorflow as tf

from tests import conftest as root
from tf_mtdet import families
from tf_mtdet.config import experiment
from tf_mtdet.losses import total

# Distinct weights per term, so one ignored or swapped weight changes the sum.
WEIGHTS = {'rpn_score': 1.5, 'rpn_box': 2.5, 'frcnn_cls': 3.5,
           'frcnn_box': 4.5, 'mask': 5.5, 'distance_transform': 0.75,
           'semantic': 0.0}


def test_datnet_total_is_the_weighted_sum_of_its_terms():
  config = experiment.load_config(
      os.path.join(root.REPO_ROOT, 'configs', 'datnet',
                   'datnet_tiny_shapes.yaml'),
      ['model.two_stage.losses.rpn_score_weight=1.5',
       'model.two_stage.losses.rpn_box_weight=2.5',
       'model.two_stage.losses.frcnn_class_weight=3.5',
       'model.two_stage.losses.frcnn_box_weight=4.5',
       'model.two_stage.losses.mask_weight=5.5',
       'model.two_stage.losses.loss_weight=0.5'])
  dt_head, semantic = config.model.two_stage.dense_aux_heads
  dt_head.distance_transform.loss_weight = 0.75
  semantic.semantic.loss_weight = 0.0
  family_loss = families.get(config).build_losses()
  assert {t.name: t.weight for t in family_loss.terms} == WEIGHTS
  # Each term's value L_i = i + 1 stands in for what it computes from the
  # model's outputs; the weighting is what is under test.
  values = {name: float(i + 1) for i, name in enumerate(WEIGHTS)}
  loss = total.TotalLoss(
      [dataclasses.replace(t, fn=lambda o, l, v=values[t.name]: tf.constant(v))
       for t in family_loss.terms], family_loss.loss_weight)
  got = {k: float(v) for k, v in loss({}, {}).items()}
  # 0.5 * (1.5*1 + 2.5*2 + 3.5*3 + 4.5*4 + 5.5*5 + 0.75*6 + 0*7)
  #   = 0.5 * (1.5 + 5 + 10.5 + 18 + 27.5 + 4.5) = 33.5
  np.testing.assert_allclose(got['model_loss'], 33.5, rtol=1e-6)
  # A weight-0 term is still reported, with its own value.
  assert got['semantic_loss'] == 7.0
  assert set(got) == {f'{n}_loss' for n in WEIGHTS} | {'model_loss'}
