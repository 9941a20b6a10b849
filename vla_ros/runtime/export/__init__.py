"""ONNX export (`vla-ros export`): the graphs a model is exported as, and the directory they go to.

    onnx_export.py            export_onnx / ensure_export: graphs + manifest.json, cached by model and code hash
    onnx_graphs.py            the `kv_expert` family's graphs as export-friendly torch modules
    onnx_graphs_joint_mot.py  the `joint_mot` family's (pi0 / pi0.5) graphs

The onnxruntime and tensorrt backends (`runtime/backends/`) run what is written here.
"""
