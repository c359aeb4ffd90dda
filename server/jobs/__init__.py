"""A job's life, whatever runs it: queue, phases, log, channels, monitor, orphans."""
