"""The one exception type that entry points turn into a single clear line instead of a traceback.

Raised for anything a user can fix by changing a config key or a file: an impossible setting, an
empty data folder, a split that would leave a class out. The message names the key or file and
the reason, and says what to do.
"""


class UserError(ValueError):
    """A problem with the user's configuration or data, explained in one line."""
