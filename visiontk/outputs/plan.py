"""Everything one predict run writes, and the rule that no output is also one of its inputs."""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Callable, Iterable, Iterator, Sequence

from visiontk.console import warn

from .output_file import OutputFile
from .output_folder import OutputFolder
from .records import RecordWriter


def _strictly_inside(path: str, folder: str) -> bool:
    return path.startswith(folder.rstrip(os.sep) + os.sep)


@dataclass
class PredictionOutputs:
    # The record writer, given the opened results stream (stdout or --out).
    writer: Callable[[IO[str]], RecordWriter]
    stream: OutputFile = field(default_factory=lambda: OutputFile(None))
    # Other whole files the writer fills (embed's .npy and its .paths.txt).
    files: list[OutputFile] = field(default_factory=list)
    # Folders of per-image files.
    folders: list[OutputFolder] = field(default_factory=list)
    # The results are one document (a COCO json array), valid only once finished:
    # a stopped or failed run leaves no half of it (OutputFile.open_text).
    whole_document: bool = False

    def refuse_inputs(self, sources: Sequence[str], checkpoint: str | Path | None = None) -> None:
        """Before any work (before the model is loaded): no output is an input known now --
        a file or folder given as SOURCE, or the checkpoint -- even with --overwrite.

        Paths streamed from stdin are known only as they come: `screen_inputs`.
        """
        given = [Path(s) for s in sources if s != "-"]
        folders = [p for p in given if p.is_dir()]
        files = [p for p in given if p.exists() and not p.is_dir()]
        others = [Path(checkpoint)] if checkpoint is not None and Path(checkpoint).is_file() else []
        for f in (self.stream, *self.files):
            if f.path is None:
                continue
            f.check()
            for p in files:
                f.refuse_input(p)
            for p in others:
                f.refuse_input(p, "the checkpoint")
        for d in self.folders:
            d.refuse_inputs(files, folders, others)

    def screen_inputs(self, paths: Iterable[Path], sources: Iterable[str]) -> Iterator[Path]:
        """Pass `paths` through, stopping with a UserError at an input that is an output
        file, and leaving out what lies in an output folder nested in a source folder.

        Checked as the paths stream by (stdin lists are never held in memory);
        no existing output file has been touched by then. The folder rule:
        `predict photos/ --out-dir photos/masks` must not read back the masks (of
        this run, or of the last one) as photos. An output folder that *is* a
        source folder is allowed only when it never replaces a file (segment
        masks, renamed instead); one that may replace files was refused by
        `refuse_inputs`.
        """
        files = [f for f in (self.stream, *self.files) if f.path is not None]
        walked = [os.path.abspath(s) for s in sources if s != "-" and os.path.isdir(s)]
        nested = [(os.path.abspath(d.path), d.path) for d in self.folders
                  if any(_strictly_inside(os.path.abspath(d.path), w) for w in walked)]
        # Stdin paths in a folder that replaces files: refused as they come (files and
        # folders named on the command line were refused before any work).
        replacing = [d for d in self.folders if d.replaces_files]
        warned = False
        for p in paths:
            if not isinstance(p, Path):  # a stdin line that is the input itself (numbers, a sentence): no file
                yield p
                continue
            for f in files:
                f.refuse_input(p)
            for folder in replacing:
                folder.refuse_input(p)
            inside = next((given for folder, given in nested if _strictly_inside(os.path.abspath(p), folder)), None)
            if inside is not None:
                if not warned:
                    warn(f"{inside}: output folder; the images in it are not read as inputs")
                    warned = True
                continue
            yield p

    def write(self, run: Callable[..., dict], paths: Iterable[Path], sources: Iterable[str]) -> dict:
        """`run(paths, writer, flush=...)` (a Predictor's) with every output open; its stats.

        The results stream is flushed after each batch, so a reader at the other
        end of a pipe gets records as they come.
        """
        screened = self.screen_inputs(paths, sources)
        with self.stream.open_text(whole=self.whole_document) as stream:
            writer = self.writer(stream)
            try:
                stats = run(screened, writer, flush=stream.flush)
            except BaseException:
                # The first error is the one to report: cleaning up after a full disk
                # meets the full disk again (a scratch file's close flushes).
                with contextlib.suppress(OSError):
                    writer.abort()
                raise
            writer.close()
        return stats
