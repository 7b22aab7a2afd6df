"""Streaming text release: whole characters only, stop strings cut and never leaked."""

from vlserve.engine.transformers.detokenize import StreamDecoder


def byte_decoder(tokens: list[int]) -> str:
    """Each token is one byte of UTF-8, like a byte-level BPE at its worst."""
    return bytes(tokens).decode("utf-8", errors="replace")


def feed(decoder: StreamDecoder, text: str) -> list[str]:
    return [decoder.push(b) for b in text.encode()]


def test_multibyte_characters_are_released_whole():
    decoder = StreamDecoder(byte_decoder)
    pieces = feed(decoder, "净利润")
    assert "".join(pieces) == "净利润"
    assert all(p in ("", "净", "利", "润") for p in pieces)


def test_stop_string_cuts_the_text_and_is_not_streamed():
    decoder = StreamDecoder(byte_decoder, stop=["END"])
    out = "".join(feed(decoder, "value 12 EN"))
    assert out == "value 12 "  # "EN" may start the stop string: held back
    out += decoder.push(ord("D"))
    assert decoder.stopped
    assert out == "value 12 "
    assert decoder.flush() == ""


def test_held_back_prefix_is_released_when_it_is_not_a_stop():
    decoder = StreamDecoder(byte_decoder, stop=["END"])
    out = "".join(feed(decoder, "ENx"))
    assert out == "ENx"
    assert not decoder.stopped


def test_flush_releases_the_tail():
    decoder = StreamDecoder(byte_decoder, stop=["###"])
    out = "".join(feed(decoder, "a#"))
    assert out == "a"
    assert decoder.flush() == "#"


def test_earliest_of_several_stops_wins():
    decoder = StreamDecoder(byte_decoder, stop=["c", "bc"])
    out = "".join(feed(decoder, "abc"))
    assert decoder.stopped
    assert out == "a"


def test_included_stop_string_ends_the_text_and_nothing_is_held_back():
    decoder = StreamDecoder(byte_decoder, stop=["END"], include_stop=True)
    pieces = feed(decoder, "value EN")
    assert pieces[-2:] == ["E", "N"]  # streamed at once: the stop string is part of the answer either way
    assert decoder.push(ord("D")) == "D" and decoder.stopped
    assert decoder.flush() == ""


def word_decoder(words: list[str]):
    """Token i decodes to words[i]: one token can complete several stop strings at once."""
    return lambda tokens: "".join(words[t] for t in tokens)


def test_the_stop_string_completed_first_ends_the_text_included_or_not():
    words = ["x", "abcd tail"]
    for include, expected in ((False, "xa"), (True, "xabc")):
        decoder = StreamDecoder(word_decoder(words), stop=["abcd", "bc"], include_stop=include)
        assert decoder.push(0) + decoder.push(1) == expected  # "bc" is complete before "abcd" is
        assert decoder.stopped and decoder.flush() == ""
