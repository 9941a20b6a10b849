"""Tools around the runtime for benchmarks and tests; nothing on a node's hot path imports them.

    baseline.py         the straightforward (Alpamayo-R1 released code) path: reference and baseline
    bench.py            `bench runtime`: the Policy against that baseline, in the same run
    backend_bench.py    `bench runtime --backend onnxruntime|tensorrt`: an exported backend against torch
    bench_joint_mot.py  `bench runtime` for a `joint_mot` model against its uncached joint forward
    parity.py           a backend against the float32 torch runtime on the same tick (`vla-ros parity`)
    synthetic.py        deterministic synthetic ticks (no sensors needed)
"""
