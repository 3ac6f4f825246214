"""Exceptions that the CLI turns into one-line messages and exit codes."""


class VisionTKError(Exception):
    """Base class; `exit_code` is what the CLI exits with."""

    exit_code = 1


class UserError(VisionTKError):
    """Bad usage or bad input (a file, a key, a value): exit code 2.

    The message must name the file or key and the problem in one line.
    """

    exit_code = 2


class DataError(UserError):
    """A data file (image, annotation, mask) that cannot be used."""


class JobError(VisionTKError):
    """The job itself failed (e.g. some images could not be read): exit code 1."""

    exit_code = 1
