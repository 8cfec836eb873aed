"""The one exception type for problems the user can fix.

Every check on user input (data, shapes, hyper-parameters, paths) raises `KerasSSLError` with a
message that says what was wrong and how to fix it. The CLI prints such errors as one line and
exits non-zero; it lets any other exception (a bug) show its traceback.
"""


class KerasSSLError(ValueError):
    """Bad input, data or settings; the message says what was wrong and how to fix it."""
