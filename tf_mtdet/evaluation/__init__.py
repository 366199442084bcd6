"""Evaluators (COCO AP, proposal recall, VOC mAP, semantic mIoU) and a callback.

All evaluators share one host-side interface: `reset_states()`,
`update_state(groundtruths, predictions)` with batched numpy arrays or
tensors, and `result() -> dict[str, float]` (which also resets).
"""

from tf_mtdet.evaluation.callbacks import EvaluationCallback
from tf_mtdet.evaluation.callbacks import evaluate_dataset
from tf_mtdet.evaluation.coco import COCOEvaluator
from tf_mtdet.evaluation.recall import ProposalRecallEvaluator
from tf_mtdet.evaluation.segmentation import SemanticIoUEvaluator
from tf_mtdet.evaluation.voc import average_precision
from tf_mtdet.evaluation.voc import VOCMeanAPEvaluator

__all__ = [
    'COCOEvaluator',
    'EvaluationCallback',
    'ProposalRecallEvaluator',
    'SemanticIoUEvaluator',
    'VOCMeanAPEvaluator',
    'average_precision',
    'evaluate_dataset',
]
