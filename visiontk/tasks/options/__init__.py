"""Each task's own command-line options and help texts, importable without torch.

fields.py: `option()`, a dataclass field that is also a command-line option;
spec.py: `CommandSpec`, what the generic commands need to know about a task;
classify.py, detect.py, segment.py: each task's option dataclasses and spec.
"""
