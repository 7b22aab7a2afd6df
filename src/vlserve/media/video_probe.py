"""Read a video's container header, and refuse it there: before a single frame is decoded.

The first bytes say which container it is (an ISO base media ``ftyp``/``moov`` box: mp4 or QuickTime mov;
an EBML header: WebM); the file is then opened with that demuxer only, never with FFmpeg's guess, so a
playlist, a concat script or any other format that reads further files or URLs is never parsed. The header
gives the duration, the frame count (the stream's own count, or the duration times the frame rate), the
resolution and the codec: each is checked against :class:`VideoLimits` before decoding starts, so a small
file whose header claims ten hours, or 16K frames, costs a header read.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import av

from vlserve.errors import ClientError, ImageError, PayloadTooLargeError, UnsupportedMediaError
from vlserve.media.limits import VideoLimits, payload_too_large

__all__ = ["CODECS", "VideoLimits", "VideoProbe", "probe", "probe_video"]

# Codecs accepted, by FFmpeg's decoder name, as this PyAV build decodes them.
CODECS = ("h264", "hevc", "vp8", "vp9", "av1", "mpeg4")
_WEBM_CODECS = ("vp8", "vp9", "av1")
_CODEC_IDS = {av.codec.Codec(name, "r").id: name for name in CODECS}  # FFmpeg's codec ids; a build's decoders vary
_ISO_BOXES = (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip", b"pnot")
_EBML = b"\x1a\x45\xdf\xa3"
_MEDIA_TYPES = {"mp4": "video/mp4", "mov": "video/quicktime", "webm": "video/webm"}


@dataclass(frozen=True)
class VideoProbe:
    """What a video's header says about it."""

    container: str  # mp4, mov or webm
    codec: str  # FFmpeg's decoder name: h264, vp9, …
    width: int
    height: int
    duration_s: float | None  # None: the header does not say (then checked from the frames as they come)
    frames: int | None  # the stream's frame count, or duration x frame rate; None: unknown
    start_s: float = 0.0  # the first frame's time (an edit list or a stream that starts late)

    @property
    def media_type(self) -> str:
        return _MEDIA_TYPES[self.container]


def sniff_container(data: bytes, *, param: str) -> str:
    """The demuxer for ``data`` from its first bytes: ``mov`` (mp4 and mov) or ``matroska`` (WebM)."""
    if data[:4] == _EBML:
        return "matroska"
    if len(data) >= 8 and data[4:8] in _ISO_BOXES:
        return "mov"
    raise UnsupportedMediaError(
        "video is not an mp4, mov or WebM file (no ISO media box or EBML header at its start)",
        param=param,
        code="unsupported_video_format",
    )


def open_container(data: bytes, *, param: str) -> av.container.InputContainer:
    """``data`` opened with the demuxer its first bytes name (never FFmpeg's own guess); header only."""
    demuxer = sniff_container(data, param=param)
    try:
        return av.open(io.BytesIO(data), mode="r", format=demuxer, options={"enable_drefs": "0"})
    except (av.FFmpegError, ValueError, OSError):
        raise invalid_video("its container header cannot be read", param) from None


def invalid_video(problem: str, param: str) -> ClientError:
    return ClientError(f"video is not decodable: {problem}", param=param, code="invalid_video")


def _container_name(container: av.container.InputContainer, codec: str, param: str) -> str:
    if "matroska" in container.format.name:
        if codec not in _WEBM_CODECS:
            raise UnsupportedMediaError(
                f"a Matroska (.mkv) file with {codec} video is not supported; send mp4, mov or WebM (VP8, VP9 or AV1)",
                param=param,
                code="unsupported_video_format",
            )
        return "webm"
    brand = str(container.metadata.get("major_brand", "")).strip()
    return "mov" if brand == "qt" else "mp4"


def _duration(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float | None:
    if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
        return float(stream.duration * stream.time_base)
    if container.duration is not None and container.duration > 0:
        return container.duration / av.time_base
    return None


def _frame_count(stream: av.video.stream.VideoStream, duration: float | None) -> int | None:
    if stream.frames:
        return int(stream.frames)
    rate = stream.average_rate or stream.guessed_rate
    if duration is not None and rate:
        return math.ceil(duration * float(rate))
    return None


def codec_name(decoder: av.codec.Codec) -> str:
    """The format a decoder reads (``av1`` for FFmpeg's ``libdav1d``), by codec id: what CODECS lists."""
    return _CODEC_IDS.get(decoder.id, decoder.name)


def probe(container: av.container.InputContainer, limits: VideoLimits, *, param: str) -> VideoProbe:
    """The first video stream's header, checked against ``limits``; nothing is decoded."""
    if not container.streams.video:
        raise invalid_video("it has no video stream", param)
    stream = container.streams.video[0]
    codec = codec_name(stream.codec_context.codec)
    if codec not in CODECS:
        raise UnsupportedMediaError(
            f"video codec {codec[:30]!r} is not supported; supported codecs are {', '.join(CODECS)}",
            param=param,
            code="unsupported_video_codec",
        )
    name = _container_name(container, codec, param)
    width, height = stream.codec_context.width, stream.codec_context.height
    if width <= 0 or height <= 0:
        raise invalid_video(f"its header gives no frame size ({width}x{height})", param)
    if width * height > limits.max_pixels:
        raise ImageError(
            f"video frames are {width}x{height} = {width * height} pixels, more than the {limits.max_pixels} "
            "pixel limit (VLSERVE_VIDEO_MAX_PIXELS)",
            param=param,
            code="video_too_large",
        )
    duration = _duration(container, stream)
    if duration is not None and duration > limits.max_seconds:
        raise too_long(duration, limits.max_seconds, param)
    frames = _frame_count(stream, duration)
    if frames is not None and frames * width * height > limits.max_decode_pixels:
        raise too_much_decoding(limits.max_decode_pixels, param, frames=frames, size=(width, height))
    start = float(stream.start_time * stream.time_base) if stream.start_time and stream.time_base else 0.0
    return VideoProbe(name, codec, width, height, duration, frames, max(0.0, start))


def probe_video(data: bytes, limits: VideoLimits, *, param: str) -> VideoProbe:
    """Check ``data``'s size, then its header (:func:`probe`); nothing is decoded."""
    check_video_bytes(data, limits, param=param)
    with open_container(data, param=param) as container:
        return probe(container, limits, param=param)


def check_video_bytes(data: bytes, limits: VideoLimits, *, param: str) -> None:
    if len(data) > limits.max_bytes:
        raise payload_too_large(limits.max_bytes, param=param, what="video", setting="VLSERVE_VIDEO_MAX_BYTES")
    if not data:
        raise invalid_video("it is empty (0 bytes)", param)


def too_long(seconds: float, max_seconds: float, param: str) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"video is {seconds:.1f} s long, more than the {max_seconds:g} s limit (VLSERVE_VIDEO_MAX_SECONDS)",
        param=param,
        code="video_too_long",
    )


def too_much_decoding(
    max_decode_pixels: int, param: str, *, frames: int | None = None, size: tuple[int, int] | None = None
) -> PayloadTooLargeError:
    said = f"its {frames} frames of {size[0]}x{size[1]} are" if frames is not None and size else "its frames are"
    return PayloadTooLargeError(
        f"video is too much to decode: {said} more than the {max_decode_pixels} pixels one video may decode "
        "(VLSERVE_VIDEO_MAX_DECODE_PIXELS)",
        param=param,
        code="video_too_large",
    )
