"""SPARC pretraining: the objective and its baselines (``losses``), the dual encoder (``model``),
checkpoints the evaluator loads as ``sparc:DIR`` (``checkpoint``), data (``data``), the training loop
(``train``, ``config``, ``distributed``). ``model``, ``losses`` and ``checkpoint`` import without the
training loop. Run with ``sparc-eval pretrain --config FILE`` or ``torchrun -m sparc_eval.pretrain --config FILE``.
"""
