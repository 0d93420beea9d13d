"""Speed and memory benchmarks behind ``gdkvm bench``: hardware-stamped CSVs, one module per benchmark.

* :mod:`gdkvm.bench.fps`: streaming inference frames/s (model-only and end-to-end) and the faithful
  reference path of :mod:`gdkvm.bench.reference_path`;
* :mod:`gdkvm.bench.scaling`: time per frame and memory against video length for every memory rule;
* :mod:`gdkvm.bench.kernels`: the per-frame memory step, Triton vs the torch reference (and fla);
* :mod:`gdkvm.bench.common`: re-exports the shared plumbing (options, failures, timing, memory, stamp, csv_rows).

The definitions (what is timed, how memory is measured, the GPU targets) are in ``docs/benchmarks.md``.
"""
