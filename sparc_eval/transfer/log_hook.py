"""mmengine's ``LoggerHook`` without its JSON dump of evaluation metrics.

The stock hook writes ``<timestamp>.json`` into the work folder after testing (our configs have no
validation loop and no visualisation backends, so nothing else writes JSON there); our work folders live
inside results folders, which ``leaderboard``, ``check`` and ``merge`` scan for ``*.json`` result
files. The metrics are still logged (text log and console), and they go into the result JSON.
"""
from __future__ import annotations

from mmengine.hooks import LoggerHook


class TextLoggerHook(LoggerHook):
    def after_test_epoch(self, runner, metrics=None) -> None:
        _, log_str = runner.log_processor.get_log_after_epoch(runner, len(runner.test_dataloader), "test",
                                                              with_non_scalar=True)
        runner.logger.info(log_str)
