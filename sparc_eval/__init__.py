"""sparc-eval: trustworthy evaluation of image-text models, with a bundled SPARC pretraining module.

Python API: ``sparc_eval.api.evaluate``, ``sparc_eval.api.load_model``, ``sparc_eval.api.load_task``.
"""
