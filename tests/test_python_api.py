"""The README's "Use it from Python" example runs as written (shipped weights, a phantom AVI as the video).

``EXAMPLE`` is the README text verbatim; the test copies a phantom recording to ``heart.avi`` in an empty
folder and executes it there.
"""

from __future__ import annotations

import shutil

import numpy as np

EXAMPLE = '''\
from pathlib import Path

from gdkvm.predict.analysis import analyse_masks
from gdkvm.predict.inputs import read_recording
from gdkvm.predict.segmenter import load_segmenter

loaded = load_segmenter(device="cpu")      # the shipped weights; load_segmenter(Path("results/runs/RUN")) for a run
rec = read_recording(Path("heart.avi"))    # AVI / MP4 / NIfTI -> frames (T, H, W) uint8, fps, spacing
masks = loaded.segmenter(rec.frames)       # streamed frame by frame: LV masks (T, H, W) in {0, 1}
result = analyse_masks(masks, rec.fps, rec.spacing, rec.labelled_phases)
print(f"{len(masks)} frames, EF {result.phases.mean_ef:.1f}% over {len(result.phases.beats)} beat(s)")
'''

STEPPER_EXAMPLE = '''\
import torch

model, size = loaded.segmenter.model, loaded.segmenter.size  # frames must be size x size, H and W % 16 == 0
stepper = model.stepper()                                    # O(1) state for every rule but softmax
with torch.no_grad():
    for frame in torch.rand(5, 1, 1, size, size):            # (B, 1, H, W) float in [0, 1]
        logits = stepper.step(frame)                         # (B, O + 1, H, W), channel 1 = LV
        lv = logits.argmax(1) == 1
'''


def test_readme_python_example_runs(phantom, tmp_path, monkeypatch, capsys, one_cpu_thread):
    video = sorted((phantom.echonet_root / "Videos").glob("*.avi"))[0]
    shutil.copy(video, tmp_path / "heart.avi")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(EXAMPLE, "README example", "exec"), namespace)
    masks, rec, result = namespace["masks"], namespace["rec"], namespace["result"]
    assert masks.shape == rec.frames.shape and masks.dtype == np.uint8 and masks.any()
    assert result.ef_available and 0 < result.phases.mean_ef < 100
    assert "EF" in capsys.readouterr().out

    exec(compile(STEPPER_EXAMPLE, "README stepper example", "exec"), namespace)
    assert namespace["lv"].shape == (1, namespace["size"], namespace["size"])


def test_readme_holds_the_tested_examples_verbatim():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert EXAMPLE in readme and STEPPER_EXAMPLE in readme
