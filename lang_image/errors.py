"""The errors a user can cause, at the bottom of the import graph.

Every module that reports a user-fixable problem raises one of these with one sentence that
names the problem and the fix; `main.py` prints that sentence without a traceback.
"""


class ConfigError(ValueError):
  """A user-fixable problem with the config or the environment."""


class TrainingError(RuntimeError):
  """Training cannot go on (the loss stays non-finite, the disk is full); one sentence."""
