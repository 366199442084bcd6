"""The papers' schedules against hand-computed learning rates.

The 1x COCO schedule (Mask R-CNN / SA-FPN papers): lr 0.02 at batch 16,
12 epochs of 118287 images, x0.1 after epochs 9 and 11, 500 linear warmup
steps from 0.001 x lr. Every number below is worked out by hand in the comment
beside it, not by the code under test.
"""

import pytest

from tf_mtdet.config import experiment
from tf_mtdet.training import schedules

CONFIG = 'mask_rcnn/mask_rcnn_r50_fpn_1x_coco'


def _lr_at(lr_schedule, step: int) -> float:
  return float(lr_schedule(step))


@pytest.mark.parametrize(
    'batch, steps_per_epoch, total, peak, boundaries',
    [
        # 118287 / 16 = 7392.9 -> 7393 steps; x12 = 88716;
        # 9/12 x 88716 = 66537; 11/12 x 88716 = 81323.
        (16, 7393, 88716, 0.02, (66537, 81323)),
        # Linear scaling: batch 8 halves the lr, doubles the steps.
        # 118287 / 8 = 14785.9 -> 14786; x12 = 177432; 133074; 162646.
        (8, 14786, 177432, 0.01, (133074, 162646)),
    ])
def test_1x_schedule_by_hand(batch, steps_per_epoch, total, peak, boundaries):
  config = experiment.load_config(
      CONFIG, [f'train_data.global_batch_size={batch}'])
  schedule = config.schedule
  assert schedules.steps_per_epoch(schedule, batch) == steps_per_epoch
  assert schedules.total_steps(schedule, batch) == total
  assert schedules.learning_rate(schedule, batch) == pytest.approx(peak)
  _, lr = schedules.build_optimizer(schedule, batch)
  # Warmup: 0.001 x peak at step 0, half way at step 250, peak at 500.
  assert _lr_at(lr, 0) == pytest.approx(peak * 0.001, rel=1e-5)
  assert _lr_at(lr, 250) == pytest.approx(
      peak * 0.001 + 0.5 * (peak - peak * 0.001), rel=1e-5)
  assert _lr_at(lr, 499) == pytest.approx(
      peak * 0.001 + 499 / 500 * (peak - peak * 0.001), rel=1e-5)
  assert _lr_at(lr, 500) == pytest.approx(peak, rel=1e-6)
  first, second = boundaries
  # A boundary step still trains at the rate before it.
  assert _lr_at(lr, first) == pytest.approx(peak, rel=1e-6)
  assert _lr_at(lr, first + 1) == pytest.approx(peak / 10, rel=1e-5)
  assert _lr_at(lr, second) == pytest.approx(peak / 10, rel=1e-5)
  assert _lr_at(lr, second + 1) == pytest.approx(peak / 100, rel=1e-5)
  assert _lr_at(lr, total) == pytest.approx(peak / 100, rel=1e-5)


def test_total_steps_scales_decay_epochs_proportionally():
  # A 100-step quick run of the 1x schedule decays at 9/12 and 11/12 of it:
  # steps 75 and 92 (91.67 rounds to 92), after a 10-step warmup.
  config = experiment.load_config(CONFIG, [
      'train_data.global_batch_size=2', 'schedule.total_steps=100',
      'schedule.warmup_steps=10'])
  _, lr = schedules.build_optimizer(config.schedule, 2)
  peak = 0.02 * 2 / 16
  assert _lr_at(lr, 10) == pytest.approx(peak, rel=1e-6)
  assert _lr_at(lr, 75) == pytest.approx(peak, rel=1e-6)
  assert _lr_at(lr, 76) == pytest.approx(peak / 10, rel=1e-5)
  assert _lr_at(lr, 92) == pytest.approx(peak / 10, rel=1e-5)
  assert _lr_at(lr, 93) == pytest.approx(peak / 100, rel=1e-5)


def test_sa_fpn_20e_schedule_by_hand():
  # SA-FPN paper's 20 epochs, x0.1 after 16 and 19, batch 16: 7393 x 20 =
  # 147860 steps; 16/20 -> 118288; 19/20 -> 140467.
  config = experiment.load_config(
      'sa_fpn_ej_head/mask_rcnn_r101_sa_fpn_ej_head_20e_coco')
  schedule = config.schedule
  batch = config.train_data.global_batch_size
  assert batch == 16
  assert schedules.total_steps(schedule, batch) == 147860
  _, lr = schedules.build_optimizer(schedule, batch)
  assert _lr_at(lr, 118288) == pytest.approx(0.02, rel=1e-6)
  assert _lr_at(lr, 118289) == pytest.approx(0.002, rel=1e-5)
  assert _lr_at(lr, 140468) == pytest.approx(0.0002, rel=1e-5)


def test_datnet_detectron_1x_decays_at_60k_and_80k_of_90k():
  # 90k iterations at batch 16 with x0.1 at 60k and 80k: epochs 8 and 10.667
  # of 12. With total_steps 90000 the boundaries are 60000 and 80000
  # (10.667 / 12 x 90000 = 80002.5 -> 80002 is within the rounding of the
  # paper's round numbers; 8 / 12 x 90000 = 60000 exactly).
  config = experiment.load_config('datnet/datnet_light_r50_fpn_1x_coco', [
      'schedule.total_steps=90000'])
  assert config.schedule.decay_epochs == [8, 10.667]
  _, lr = schedules.build_optimizer(config.schedule, 16)
  assert _lr_at(lr, 60000) == pytest.approx(0.02, rel=1e-6)
  assert _lr_at(lr, 60001) == pytest.approx(0.002, rel=1e-5)
  assert _lr_at(lr, 80003) == pytest.approx(0.0002, rel=1e-5)
