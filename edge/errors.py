"""One exception hierarchy; every message is a single line naming what was wrong and where."""


class CapsuleEdgeError(Exception):
    """Base of every error the runtime raises on purpose."""


class BadInputError(CapsuleEdgeError):
    """A file, folder or frame that cannot be used."""


class ModelError(CapsuleEdgeError):
    """A model file or card that is missing, malformed or inconsistent."""


class BackendUnavailableError(CapsuleEdgeError):
    """A backend whose package or library is not installed."""


class OptionError(CapsuleEdgeError, ValueError):
    """A backend option out of range, or one that the chosen backend does not take.

    Also a ``ValueError``, as the options' checks raised before this class existed."""


class MissingDependencyError(CapsuleEdgeError):
    """An optional package that a command needs is not installed (the message says which
    extra brings it)."""
