"""The speaker stage's process: load the voice encoder, then for the one job it is sent,
find speech, take voice prints and group them."""

from __future__ import annotations

import resource
import signal
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection

from pipeline.lifeline import arm_parent_death_signal


def main(connection: Connection, threads: int, leader: int) -> None:
    # The leader stops the job; a Ctrl-C in a terminal must not print a traceback here.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    arm_parent_death_signal(leader)  # dies with the leader, as the decoding workers do
    try:
        from pipeline.speakers.cluster import cluster
        from pipeline.speakers.embed import Encoder, speech_regions

        began = time.monotonic()
        # torch loads in a thread while this one waits for the audio and finds its speech:
        # on a short clip the two together are most of the stage's time.
        with ThreadPoolExecutor(1, thread_name_prefix="encoder") as pool:
            loading = pool.submit(Encoder, threads)
            _, samples, count = connection.recv()
            regions = speech_regions(samples)
            found = time.monotonic() - began
            encoder = loading.result()
        connection.send(
            ("note", f"model loaded and {len(regions)} stretch(es) of speech found in "
             f"{time.monotonic() - began:.2f} s (speech in {found:.2f} s)")
        )  # fmt: skip

        def progress(share: float) -> None:
            connection.send(("progress", share, "voice prints"))
            while connection.poll():  # the leader's word that the decoding is over
                message = connection.recv()
                if message[0] == "threads":
                    encoder.use_threads(message[1])

        windows, vectors = encoder.embed(samples, regions, progress)
        began = time.monotonic()
        groups = cluster(vectors, count).tolist() if len(vectors) else []
        connection.send(("note", f"grouped {len(vectors)} voice prints in {time.monotonic() - began:.2f} s"))
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        connection.send(("done", windows, groups, peak))
    except (EOFError, BrokenPipeError):
        return  # the leader is gone
    except Exception as error:
        line = traceback.format_exception_only(error)[-1].strip()
        connection.send(("failed", line))
    finally:
        connection.close()
