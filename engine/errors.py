"""Errors every entry point turns into one clear line and a non-zero exit (or a gRPC status).

Each class carries an exit code so the CLI can tell input problems from output problems.
"""


class HdrliftError(Exception):
    """Base class: the message is shown to the user as is, on one line."""

    exit_code = 1

    def __str__(self) -> str:  # keep it on one line whatever the cause said
        return " ".join(super().__str__().split())


class InputError(HdrliftError):
    """Missing, unreadable, corrupt or unsupported input (file, pixel format, NaN pixels...)."""

    exit_code = 2


class OutputError(HdrliftError):
    """Output cannot be written: unwritable folder, full disk, existing file without --overwrite."""

    exit_code = 3


class ModelError(HdrliftError):
    """Unknown model, model without shipped weights, weights that do not match the network."""

    exit_code = 4


class ColourError(HdrliftError):
    """Unknown colour space or OCIO config, or a conversion OCIO cannot build."""

    exit_code = 5
