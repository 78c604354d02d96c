"""User-facing errors: one line, exit code 2, raised before anything in runs/ is touched."""


class UserError(Exception):
    """A problem the user can fix (bad config, missing file or dataset); printed as one line."""

    exit_code = 2


class ConfigError(UserError):
    """The experiment file or an override is invalid."""


class DataError(UserError):
    """A dataset, data file or tokenizer cannot be found or read."""
