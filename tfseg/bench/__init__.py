"""Benchmarks that measure their candidates side by side in one run (``tfseg bench ...``).

``pipeline``: the tf.data input pipeline against a single-threaded OpenCV loop, and the
TensorFlow CLAHE against OpenCV's (:mod:`.pipeline` orchestrates :mod:`.staging`,
:mod:`.candidates`, :mod:`.reference`, :mod:`.clahe_core` and :mod:`.report`).
``train``: one optimizer step per model in float32 / mixed_bfloat16, with and without XLA,
on the installed Keras backend (:mod:`.train_step`).
``accuracy``: presets trained for wall-clock budgets on folds of KITTI Road, scored at
original size beside a plain Keras script (:mod:`.accuracy`, :mod:`.plain_unet`).
"""
