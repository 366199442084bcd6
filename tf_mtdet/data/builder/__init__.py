"""Dataset builders: COCO JSON / Pascal VOC / generated shapes -> TFRecord shards."""

from tf_mtdet.data.builder.coco import read_coco
from tf_mtdet.data.builder.encode import EncodeOptions
from tf_mtdet.data.builder.records import BuildError
from tf_mtdet.data.builder.records import ProblemLog
from tf_mtdet.data.builder.voc import read_voc
from tf_mtdet.data.builder.writer import build_tfrecords
from tf_mtdet.data.builder.writer import shard_paths
