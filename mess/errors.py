"""The exception mess raises for bad input.

:class:`InputError` is a ``ValueError`` (code that catches ``ValueError`` keeps
working) whose message is one line naming the problem: the line the command line
prints after ``mess: error:`` before exiting with status 2.
"""


class InputError(ValueError):
    """Bad input (molecule, file, option, basis, functional, setting): a one-line
    message naming the problem."""
