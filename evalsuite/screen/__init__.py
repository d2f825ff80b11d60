"""Drift screening: predict a candidate's NDCG@10 loss from a small sample, in seconds, with pass/fail/uncertain.

Example:
    >>> result = screen(source, "qint8-pc", [find_task("scifact")], data_dir=data, cache_dir=cache)  # doctest: +SKIP
    >>> result.outcome  # doctest: +SKIP
    'pass'
"""

from evalsuite.screen.drift import DriftStats
from evalsuite.screen.records import SCHEMA, ScreenResult, TaskScreen
from evalsuite.screen.sample import SampleIds, ScreenSample, draw
from evalsuite.screen.screen import Screener, screen
from evalsuite.screen.verdict import Prediction, ScreenOutcome, judge, overall, predict

__all__ = ["SCHEMA", "DriftStats", "Prediction", "SampleIds", "ScreenOutcome", "ScreenResult", "ScreenSample", "Screener",
           "TaskScreen", "draw", "judge", "overall", "predict", "screen"]
