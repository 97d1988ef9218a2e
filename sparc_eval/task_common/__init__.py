"""Helpers shared by several task types (a floor below ``task_types``: plugins import these, never each other)."""
