"""Pack a label file into a copy of a .tflite model as TFLite metadata, with TFLite's own
metadata tool (tflite-support's MetadataPopulator), as Model Maker and Google's exported
detectors carry their label maps. Used by tests/stock_models.rs to check that edgecam reads
the labels a model carries in itself.

usage: embed_labels.py MODEL LABELS OUT [OUTPUT_INDEX]

The label file is attached to output OUTPUT_INDEX (default 1: the classes output of a model
ending in TFLite_Detection_PostProcess) as TENSOR_VALUE_LABELS, the type TFLite's task
library reads for a detector's classes.
"""
import os
import shutil
import sys

import flatbuffers
from tflite_support import metadata as md
from tflite_support import metadata_schema_py_generated as meta
from tflite_support import schema_py_generated as tfl


def tensor(name, label_file=None):
    t = meta.TensorMetadataT()
    t.name = name
    if label_file:
        f = meta.AssociatedFileT()
        f.name = os.path.basename(label_file)
        f.description = "class labels"
        f.type = meta.AssociatedFileType.TENSOR_VALUE_LABELS
        t.associatedFiles = [f]
    return t


def main():
    model, labels, out = sys.argv[1:4]
    labelled = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    shutil.copyfile(model, out)
    with open(model, "rb") as f:
        graph = tfl.Model.GetRootAsModel(f.read(), 0).Subgraphs(0)
    sub = meta.SubGraphMetadataT()
    sub.inputTensorMetadata = [tensor(f"input{i}") for i in range(graph.InputsLength())]
    sub.outputTensorMetadata = [
        tensor(f"output{i}", labels if i == labelled else None)
        for i in range(graph.OutputsLength())
    ]
    root = meta.ModelMetadataT()
    root.name = os.path.basename(model)
    root.subgraphMetadata = [sub]
    b = flatbuffers.Builder(0)
    b.Finish(root.Pack(b), md.MetadataPopulator.METADATA_FILE_IDENTIFIER)
    populator = md.MetadataPopulator.with_model_file(out)
    populator.load_metadata_buffer(b.Output())
    populator.load_associated_files([labels])
    populator.populate()


if __name__ == "__main__":
    main()
