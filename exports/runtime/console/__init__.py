"""The operator console: a web view of the rig (live state, emergency stop, cues) and of the runs, offline.

It runs in its own process (``python -m exports.runtime.console``), so the decoding loop never waits on a
browser and a console crash never stops decoding. ``bmi serve --console HOST:PORT`` starts it beside the
decoder and talks to it through a pair of local datagram sockets (:mod:`.bridge`): the server sends its
messages and a status snapshot twice a second without ever blocking, and polls the console's controls
(emergency stop, resume, session log, event marks, unblinding) once per loop pass. ``bmi console --runs DIR``
serves the runs page alone.
"""
