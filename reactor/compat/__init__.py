"""Drop-in replacements for standard-library modules that Python 3.12 removed.

`reactor.compat.asyncore` and `reactor.compat.asynchat` have the public
surface of Python 3.11's modules; their dispatchers are rows of a reactor's
connection table, so asyncore code runs in the same thread as every other
server on that reactor.  Change one import line::

    from reactor.compat import asyncore
"""
