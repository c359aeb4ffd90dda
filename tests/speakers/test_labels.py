"""Putting speakers on a transcript, and every format showing them (no model needed)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.formats import render
from pipeline.speakers import parse_speakers
from pipeline.speakers.assign import label_segments
from pipeline.speakers.embed import Window
from pipeline.transcript import Segment, Word


def _segment(*words: tuple[float, float, str]) -> Segment:
    ws = tuple(Word(a, b, t) for a, b, t in words)
    return Segment(ws[0].start, ws[-1].end, "".join(w.text for w in ws), ws)


# Group 7 speaks 0-3 s and 6-9 s, group 2 speaks 3-6 s.
WINDOWS = [
    Window(0.0, 1.6, 0),
    Window(1.4, 3.0, 0),
    Window(3.0, 4.6, 1),
    Window(4.4, 6.0, 1),
    Window(6.0, 9.0, 2),
]
GROUPS = [7, 7, 2, 2, 7]


def test_a_segment_is_split_where_the_speaker_changes_and_labels_follow_first_appearance():
    first = _segment((0.2, 0.8, " Hello"), (1.0, 2.5, " there."), (3.2, 3.8, " Hi,"), (4.0, 5.5, " you."))
    second = _segment((6.2, 7.0, " Bye."))
    labelled, count = label_segments([first, second], WINDOWS, GROUPS)
    assert count == 2
    assert [(s.speaker, s.text) for s in labelled] == [
        ("A", " Hello there."),
        ("B", " Hi, you."),
        ("A", " Bye."),
    ]
    assert [w.speaker for w in labelled[0].words] == ["A", "A"]
    assert labelled[1].start == 3.2 and labelled[1].end == 5.5
    round_trip = Segment.from_dict(json.loads(json.dumps(labelled[1].to_dict())))
    assert round_trip.speaker == "B" and round_trip.words[0].speaker == "B"


def test_a_segment_without_words_takes_the_speaker_of_most_of_it():
    labelled, count = label_segments([Segment(3.1, 5.9, " Hi, you.")], WINDOWS, GROUPS)
    assert (count, labelled[0].speaker) == (1, "A")


SEGMENTS = [
    Segment(0.0, 1.0, " Good morning.", speaker="A"),
    Segment(1.0, 2.0, " How are you?", speaker="A"),
    Segment(2.5, 3.5, " Fine, thanks.", speaker="B"),
]


def test_every_format_shows_the_speakers_and_uses_the_names():
    names = {"A": "Maria"}
    assert render("txt", SEGMENTS, {}) == "A: Good morning. How are you?\nB: Fine, thanks.\n"
    assert render("txt", SEGMENTS, {}, names) == "Maria: Good morning. How are you?\nB: Fine, thanks.\n"
    srt = render("srt", SEGMENTS, {}, names)
    assert "00:00:00,000 --> 00:00:01,000\nMaria: Good morning.\n" in srt and "\nB: Fine, thanks.\n" in srt
    vtt = render("vtt", SEGMENTS, {}, names)
    assert vtt.startswith("WEBVTT") and "<v Maria>Good morning." in vtt and "<v B>Fine, thanks." in vtt
    document = json.loads(render("json", SEGMENTS, {"duration": 3.5}, names))
    assert [s["speaker"] for s in document["segments"]] == ["Maria", "Maria", "B"]
    assert document["speaker_names"] == names


def test_without_speakers_the_formats_are_unchanged():
    plain = [Segment(0.0, 1.0, " Hello.")]
    assert render("txt", plain, {}) == "Hello.\n"
    assert "<v" not in render("vtt", plain, {}) and "speaker" not in render("json", plain, {})


@pytest.mark.parametrize("value", ["off", "auto", "1", "10", " AUTO "])
def test_speaker_choices(value):
    assert parse_speakers(value) == value.strip().lower()


@pytest.mark.parametrize("value", ["0", "11", "two", "", "-1"])
def test_other_speaker_values_are_refused_naming_the_choices(value):
    with pytest.raises(ValueError, match="off, auto or a number 1-10"):
        parse_speakers(value)


def test_mel_spectrogram_matches_librosa():
    import librosa  # installed with the speakers extra, as make test and CI do

    from pipeline.speakers.voiceprint import mel_spectrogram

    samples = (np.random.default_rng(0).standard_normal(16000 * 2) * 0.1).astype(np.float32)
    expected = librosa.feature.melspectrogram(y=samples, sr=16000, n_fft=400, hop_length=160, n_mels=40).T
    got = mel_spectrogram(samples)
    assert got.shape == expected.shape
    assert np.max(np.abs(got - expected)) <= 1e-5 * np.max(expected)
