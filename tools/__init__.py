"""The command-line tools of appc (installed as ``actool``, ``docker2aci``, ``goaci``/``acigo``, ``rkt``).

Each module parses arguments, calls the :mod:`appc` library and prints; no logic lives
only here.
"""
