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
