"""Training, evaluation and ablation engine (see docs/training.md).

- :mod:`gdkvm.engine.config`: :class:`TrainConfig`, the paper recipe as frozen defaults.
- :mod:`gdkvm.engine.losses`: cross-entropy + soft Dice on supervised frames (Cutie style).
- :mod:`gdkvm.engine.checkpoint`: atomic trainer-state save/load (weights, optimizer, RNG).
- :mod:`gdkvm.engine.distributed`: torchrun launch and DDP helpers (NCCL on GPU, gloo on CPU).
- :mod:`gdkvm.engine.sampling`: the training data order as a pure function of (seed, sample number).
- :mod:`gdkvm.engine.frames`: the one frame pipeline (resize, float, stepper, masks) of evaluate,
  predict and ``bench fps`` end-to-end.
- :mod:`gdkvm.engine.inference`: streaming inference over a split with the model's stepper.
- :mod:`gdkvm.engine.train`: the training loop (``train_run``).
- :mod:`gdkvm.engine.evaluate`: streaming evaluation, per-frame / per-video / EF tables.
- :mod:`gdkvm.engine.ablate`: the paper's Tables 3 and 4 as train + evaluate runs.
"""
