"""Loopback stand-ins for the outside services InsightMesh talks to, speaking their real wire format.

Each binds 127.0.0.1 only, can be started in-process (``start()``) or as a process
(``python -m tests.standins.<name> --port N``), and can be switched into failure modes at run time.
"""
