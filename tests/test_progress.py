"""The progress bar: counts reach rich once per REDRAW seconds, and all of them by the end."""
import io

from rich.console import Console

from visiontk.engine import progress


def test_terminal_bar_takes_few_updates_and_ends_complete(monkeypatch):
    monkeypatch.setattr(progress, "err_console", Console(file=io.StringIO(), force_terminal=True, width=100))
    monkeypatch.setattr(progress, "REDRAW", 3600.0)  # the whole loop within one redraw interval
    calls = []
    with progress.ProgressBar("epoch 1/1", total=1000, unit="img") as bar:
        assert bar.interactive
        rich_update = bar._progress.update
        monkeypatch.setattr(bar._progress, "update", lambda *a, **k: (calls.append(k), rich_update(*a, **k)))
        for _ in range(999):
            bar.update(1, loss=0.5)
        assert calls == []  # none of the 999 reached rich
        bar.update(1, loss=0.25)  # the last image: shown at once
        task = bar._progress.tasks[0]
        assert len(calls) == 1 and task.completed == 1000 and "loss=0.25" in task.fields["info"]
    # Stopped before the total (a batch skipped, Ctrl-C): the bar ends at the true count.
    with progress.ProgressBar("epoch 2/2", total=1000, unit="img") as bar:
        for _ in range(10):
            bar.update(3)
    assert bar._progress.tasks[0].completed == 30
