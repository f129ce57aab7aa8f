"""Benchmarks (not tests): ``python bench/bench.py --help``; docs/performance.md shows the results.

=================  =============================================================================
``bench.py``       the command line: parses, then runs the chosen sections and writes the JSON
``timing.py``      :class:`Timer` (warm-up, synced calls, fastest-call or median estimate,
                   interleaved rounds), peak memory, FLOP counting, dense bf16 peaks, device names
``tables.py``      the printed Markdown tables
``workspace.py``   temporary image folders, configs and checkpoints with random weights
``reference_step.py``  the public CycleGAN reference's training iteration, written compactly
``train_step.py``  section ``train``: the reference-style step against ours, per option set
``inference.py``   section ``infer``: ``test.py``'s path (a CycleGAN method) in images/s
``style.py``       section ``style``: s/image of Gatys, Johnson, WCT and AdaIN at 256 / 512 / 1024 px
``data_loader.py`` section ``data``: the training loader's pairs/s against the step's need
``quality.py``     section ``quality``: fp32 vs bf16 validation metric of a quickstart-like run
=================  =============================================================================
"""
