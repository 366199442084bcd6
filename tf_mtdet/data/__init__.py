"""Data: dataset builders (COCO/VOC/shapes -> TFRecord) and tf.data input pipelines."""
