"""Backends: what runs a family's vision, prefill and denoising for `Policy` (see `protocol.py`).

    torch_backend.py        the model's own modules: K/V buffers, the expert kernel, CUDA graphs
    onnxruntime_backend.py  the exported graphs (`vla-ros export`) in ONNX Runtime sessions
    tensorrt_backend.py     the exported graphs as TensorRT engines (unverified without a GPU)
    exported_io.py          host-side inputs of the exported graphs, shared by the two above
    engine_cache.py         tensorrt_backend's engines cached beside the export, keyed by version, GPU and shapes
    loader.py               name -> backend, with the model loaded as that backend needs it

Nothing here imports another backend's private names; `Policy` knows only the protocol.
"""
