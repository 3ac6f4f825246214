"""`--cam DIR`: the Grad-CAM overlay of each image written into a folder, its path into the record."""
from __future__ import annotations

from dataclasses import replace

from PIL import Image

from .output_folder import OutputFolder
from .plan import PredictionOutputs
from .records import RecordWriter


class CamWriter(RecordWriter):
    """Writes record["cam"]["overlay"] as <stem>_cam.png, then hands the record on with
    `cam` (the file), `cam_class` (the class explained) and `cam_peak` ([x, y] of the
    map's maximum, in the original image's pixels)."""

    def __init__(self, folder: OutputFolder, then: RecordWriter):
        self.folder, self.then = folder, then

    def __call__(self, record: dict) -> None:
        if "cam" not in record:  # an error record
            self.then(record)
            return
        record = dict(record)
        cam = record.pop("cam")
        path = self.folder.path_for(record["path"], "_cam.png")
        Image.fromarray(cam["overlay"]).save(path, format="PNG", compress_level=3)
        self.then({**record, "cam": str(path), "cam_class": cam["class"], "cam_peak": cam["peak"]})

    def close(self) -> None:
        self.then.close()

    def abort(self) -> None:
        self.then.abort()


def with_cam_folder(outputs: PredictionOutputs, directory: str, overwrite: bool = False) -> PredictionOutputs:
    """`outputs` plus the --cam folder: checked against the inputs with the others (plan.py:
    never a source folder nor the folder of a source file; empty unless --overwrite)."""
    folder = OutputFolder(directory, "--cam", overwrite)
    inner = outputs.writer
    return replace(outputs, writer=lambda stream: CamWriter(folder, inner(stream)), folders=[*outputs.folders, folder])
