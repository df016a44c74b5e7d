"""The one error type for user mistakes: the command line prints the message as one line and exits 2."""


class UserError(ValueError):
    """A mistake in the user's input: a file, a config value or a command-line option."""


class DataError(UserError):
    """A data file is unusable. The message is one line: file, row, field, what is wrong."""


class ConfigError(UserError):
    """A setting is invalid or contradicts another; the message names the option."""
