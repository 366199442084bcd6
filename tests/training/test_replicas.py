"""Replica safety: models under MirroredStrategy with 2 logical CPU replicas
and SyncBN on (the paper configs' setting).

Replica threads interleave at every SyncBN merge point; a model that kept
per-call tensors on `self` would hand one replica another's ground truth.
"""

import textwrap

from tests.training import conftest

_SETUP = """
import json, numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices('CPU')[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from tf_mtdet import families
from tf_mtdet.config import experiment
"""


def test_each_replica_trains_masks_on_its_own_ground_truth():
  """Replica 0's ground-truth masks are all ones, replica 1's all zeros; with
  Interleaving, cascade, a fused dense head and SyncBN, every positive mask
  target of a replica must come from its own masks."""
  code = _SETUP + textwrap.dedent(f"""
      overrides = ['train_data.label_map=', 'model.two_stage.num_classes=3',
                   'model.two_stage.norm_activation.use_sync_bn=true',
                   'model.two_stage.ej_head.interleaving=true',
                   'model.two_stage.roi_sampler.cascade_iou_thresholds=[0.6]',
                   'model.two_stage.detection_head.class_agnostic_bbox_pred=true',
                   'model.two_stage.dense_aux_heads=[{{type: semantic, semantic: {{num_filters: 64, levels: [2, 4]}}}}]',
                   'model.two_stage.feature_fusion.type=sum'] + [
                       f'{{k}}={{v}}' for k, v in {conftest.LEAN_TWO_STAGE!r}.items()]
      config = experiment.load_config({conftest.TINY_CONFIG!r}, overrides)
      strategy = tf.distribute.MirroredStrategy()
      assert strategy.num_replicas_in_sync == 2
      with strategy.scope():
        model = families.get(config).build_model()
      def inputs(ctx):
        r = ctx.replica_id_in_sync_group
        boxes = tf.constant([[[8.0, 8.0, 48.0, 56.0], [30.0, 4.0, 60.0, 30.0]]])
        return dict(images=tf.random.uniform([1, 64, 64, 3], seed=r),
                    image_shape=tf.constant([[64.0, 64.0]]), gt_boxes=boxes,
                    gt_classes=tf.constant([[1, 2]]),
                    gt_masks=tf.fill([1, 2, 56, 56], 1.0 - float(r)))
      per_replica = strategy.experimental_distribute_values_from_function(inputs)
      @tf.function
      def step(kw):
        out = model(training=True, **kw)
        return out['mask_targets'], out['mask_class_targets']
      for _ in range(3):
        targets, classes = strategy.run(step, args=(per_replica,))
        for r, (t, c) in enumerate(zip(strategy.experimental_local_results(targets),
                                       strategy.experimental_local_results(classes))):
          t, c = t.numpy(), c.numpy()
          positive = c > 0
          assert positive.any(), (r, c)
          # Targets are RoI crops of the ground-truth crop: inside the box a
          # replica-0 mask reads 1 (0 outside it), a replica-1 mask 0 throughout.
          peaks = t[positive].reshape([-1, t.shape[-1] ** 2]).max(axis=1)
          assert np.allclose(peaks, 1.0 - r), (r, peaks)
      print('OK')
      """)
  out = conftest.run_python(code)
  assert 'OK' in out.stdout


# Training with these settings by `train()` (fit, 2 replicas, SyncBN):
# test_training.test_fit_mirrored_two_cpu_replicas_paper_settings_loss_falls.
