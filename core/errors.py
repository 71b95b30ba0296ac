"""A small error hierarchy: the CLI turns any MmkgError into one clear line."""


class MmkgError(Exception):
    """Base of every error mmkg raises on purpose."""


class UserInputError(MmkgError):
    """The user asked for something that cannot be done (missing file, bad flag, bad column)."""


class BadRecordError(MmkgError):
    """One record or item is unusable; the batch skips it and goes on."""


class BadImageError(BadRecordError):
    """An image that cannot be read safely (corrupt, truncated, too large, outside the collection)."""


class StoreUnavailableError(MmkgError):
    """The graph store cannot be reached (server down, wrong credentials)."""


class ModelNotReadyError(MmkgError):
    """A model the command needs has not been trained or cannot be loaded."""
