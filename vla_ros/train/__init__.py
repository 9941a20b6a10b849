"""Training and exporting the bundled driving model (no ROS).

    labels.py       reasoning labels: the sentence grammar's corpus, label lookup, maneuver parsing
    bpe.py          the BPE tokenizer.json trained on the label grammar plus special tokens
    actions.py      recorded future path -> (acceleration, curvature) targets (inverse integration)
    dataset.py      bags -> cached training tensors, through the run-time sensing pipeline
    architecture.py the drive-tiny model config
    forward.py      the batched training forward: flow-matching + language-model losses
    state.py        training checkpoints (weights, optimizer, RNG) in safetensors, for --resume
    trainer.py      the training loop
    command.py      `vla-ros train`
"""
