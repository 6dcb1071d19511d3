"""The error classes of hdrlift, shared by the engine and by host plug-ins.

They live in the plugin package because it is the leaf every part imports (a host that vendors
only ``hdrlift.plugin`` gets the same classes the engine raises); ``hdrlift.engine.errors``
re-exports them. Each class carries the exit code an entry point ends with, and its message is
shown to the user as is, on one line.
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


class ServerError(HdrliftError):
    """A server could not be reached, refused the call, or broke the contract."""

    exit_code = 6
