"""Small real videos made with PyAV, for tests: several codecs and containers, a variable frame rate, a header
that claims ten hours, a corrupt file."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from fractions import Fraction

import av
from PIL import Image

MS = Fraction(1, 1000)
# (encoder, container format) for each kind the server takes
KINDS = {
    "h264-mp4": ("libx264", "mp4"),
    "hevc-mp4": ("libx265", "mp4"),
    "av1-mp4": ("libsvtav1", "mp4"),
    "vp9-webm": ("libvpx-vp9", "webm"),
    "mpeg4-mov": ("mpeg4", "mov"),
}


def make_video(
    kind: str = "h264-mp4",
    *,
    frames: int = 10,
    rate: int = 10,
    size: tuple[int, int] = (64, 48),
    pts_ms: Sequence[int] | None = None,
    rotation: int = 0,
    picture: Image.Image | None = None,
) -> bytes:
    """A clip of ``frames`` frames at ``rate`` a second (or at the given pts, in milliseconds: a variable frame
    rate), each frame a different grey level so that frames can be told apart (or each the given ``picture``);
    ``rotation``: the display matrix a phone writes, degrees counter-clockwise."""
    encoder, fmt = KINDS[kind]
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=fmt) as container:
        stream = container.add_stream(encoder, rate=rate)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        if rotation:
            stream.set_display_rotation(rotation)
        if pts_ms is not None:
            stream.codec_context.time_base = MS
        for i in range(frames):
            frame = av.VideoFrame.from_image(picture or Image.new("RGB", size, ((i * 20) % 256,) * 3))
            if pts_ms is not None:
                frame.pts, frame.time_base = pts_ms[i], MS
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


def variable_rate_video() -> bytes:
    """Six frames at 0, 0.1, 0.15, 0.9, 1.0 and 1.8 s."""
    return make_video(frames=6, pts_ms=[0, 100, 150, 900, 1000, 1800])


def ten_hour_video(kind: str = "mpeg4-mov") -> bytes:
    """Two frames, the second at 10 h: a few hundred bytes whose header says the clip lasts ten hours."""
    return make_video(kind, frames=2, pts_ms=[0, 36_000_000])


def corrupt_video() -> bytes:
    """An mp4 whose header is intact and whose frame data is noise."""
    data = bytearray(make_video("h264-mp4", frames=10, size=(64, 48)))
    start = data.index(b"mdat") + 4
    end = data.index(b"moov") - 4  # FFmpeg writes the frames first, then the index
    data[start:end] = bytes((i * 37 + 11) % 256 for i in range(end - start))
    return bytes(data)


def video_data_url(data: bytes, mime: str = "video/mp4") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"
