"""OS processes: identity, spawning, reading output, sampling and killing.

Nothing here knows of jobs or the store. The promise it keeps: a process is only ever
signalled once its identity is proven (same pid, start ticks and boot, or a marker in
its environment).
"""
