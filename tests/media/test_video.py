"""Video: the header checked before any frame is decoded, then frames sampled by time, in pairs, resized once."""

from __future__ import annotations

import io

import av
import pytest
from PIL import Image

from tests.support.videos import corrupt_video, make_video, ten_hour_video, variable_rate_video
from vlserve.errors import ClientError
from vlserve.media.limits import VideoLimits
from vlserve.media.video import MAX_FRAME_PIXELS, decode_video
from vlserve.media.video_probe import probe_video

LIMITS = VideoLimits(
    enabled=True, max_bytes=64 << 20, max_seconds=600, max_pixels=3840 * 2160, max_decode_pixels=10**10, fps=2.0,
    max_frames=64,
)  # fmt: skip


def limits(**changes) -> VideoLimits:
    return VideoLimits(**{**LIMITS.__dict__, **changes})


def refused(data: bytes, lim: VideoLimits = LIMITS) -> ClientError:
    with pytest.raises(ClientError) as err:
        decode_video(data, lim, param="video")
    assert err.value.param == "video"
    return err.value


@pytest.mark.parametrize(
    ("kind", "media_type"),
    [
        ("h264-mp4", "video/mp4"),
        ("hevc-mp4", "video/mp4"),
        ("av1-mp4", "video/mp4"),
        ("vp9-webm", "video/webm"),
        ("mpeg4-mov", "video/quicktime"),
    ],
)
def test_each_container_and_codec_is_sampled_at_two_frames_a_second(kind, media_type):
    data = make_video(kind, frames=30, rate=10, size=(320, 240))  # 3 s
    video = decode_video(data, LIMITS, param="video")
    assert video.timestamps == (0.0, 0.5, 1.0, 1.5, 2.0, 2.5)
    assert video.fps == 2.0 and video.source == data and video.source_type == media_type
    assert {frame.size for frame in video.frames} == {(320, 256)}  # multiples of 32, the aspect ratio kept
    # each kept frame is the one shown at its time: frame i has grey level 20 i mod 256 (frame 5 at 0.5 s, …)
    greys = [frame.convert("L").getpixel((160, 128)) for frame in video.frames]
    assert all(abs(grey - 100 * n % 256) <= 6 for n, grey in enumerate(greys)), greys


def test_a_phones_rotation_is_applied_so_the_model_sees_the_clip_upright():
    picture = Image.new("RGB", (320, 256), "black")
    picture.paste("white", (0, 0, 160, 256))  # the left half white, as stored
    video = decode_video(make_video(frames=4, size=(320, 256), rotation=90, picture=picture), LIMITS, param="video")
    frame = video.frames[0].convert("L")
    assert frame.size == (256, 320)  # portrait, as the phone showed it
    upright = picture.rotate(90, expand=True).convert("L")  # 90 degrees counter-clockwise: white at the bottom
    assert abs(frame.getpixel((128, 300)) - upright.getpixel((128, 300))) < 16
    assert abs(frame.getpixel((128, 20)) - upright.getpixel((128, 20))) < 16


def test_a_variable_frame_rate_is_sampled_by_the_frames_own_timestamps():
    video = decode_video(variable_rate_video(), LIMITS, param="video")
    # sampling times 0, 0.5, 1.0, 1.5: the first frame at or after each (0.9 s covers the gap after 0.15 s)
    assert video.timestamps == (0.0, 0.9, 1.0, 1.8)


def test_an_odd_number_of_frames_is_padded_with_the_last_as_qwen3_vl_takes_frames_in_pairs():
    video = decode_video(make_video(frames=12, rate=10), LIMITS, param="video")  # 1.2 s: 3 sampling times
    assert len(video.frames) == 4
    assert video.timestamps == (0.0, 0.5, 1.0, 1.0) and video.frames[3] is video.frames[2]


def test_a_clip_longer_than_the_frame_cap_is_sampled_evenly_over_its_whole_length():
    data = make_video(frames=200, rate=10)  # 20 s: 40 frames at 2 fps, more than the cap
    video = decode_video(data, limits(max_frames=9), param="video")  # rounded down to 8
    assert len(video.frames) == 8 and video.fps == pytest.approx(8 / 20)
    assert video.timestamps == (0.0, 2.5, 5.0, 7.5, 10.0, 12.5, 15.0, 17.5)


def test_frames_are_resized_into_the_per_frame_budget():
    video = decode_video(make_video(frames=4, size=(1280, 720)), LIMITS, param="video", target_pixels=200_000)
    width, height = video.frames[0].size
    assert width % 32 == 0 and height % 32 == 0 and width * height <= min(200_000, MAX_FRAME_PIXELS)
    assert abs(width / height - 16 / 9) < 0.1


def test_a_header_claiming_ten_hours_is_refused_from_the_header():
    data = ten_hour_video()
    assert len(data) < 2000
    with pytest.raises(ClientError) as err:
        probe_video(data, LIMITS, param="video")  # the header alone: nothing decoded
    assert err.value.status_code == 413 and err.value.code == "video_too_long"
    assert "36000.1 s" in err.value.message and "VLSERVE_VIDEO_MAX_SECONDS" in err.value.message
    assert refused(ten_hour_video("h264-mp4")).code == "video_too_long"
    assert refused(ten_hour_video("vp9-webm")).code == "video_too_long"  # WebM: no frame count, the duration says


def test_too_large_a_resolution_is_refused_from_the_header():
    error = refused(make_video("mpeg4-mov", frames=1, size=(4096, 2304)))  # above 3840 x 2160
    assert error.status_code == 400 and error.code == "video_too_large"
    assert "4096x2304" in error.message and "VLSERVE_VIDEO_MAX_PIXELS" in error.message


def test_more_decoding_than_the_budget_is_refused_from_the_header():
    error = refused(make_video(frames=30, size=(64, 48)), limits(max_decode_pixels=29 * 64 * 48))
    assert error.status_code == 413 and "VLSERVE_VIDEO_MAX_DECODE_PIXELS" in error.message


def test_too_many_bytes_are_refused_before_the_header_is_read():
    error = refused(make_video(), limits(max_bytes=1024))
    assert error.status_code == 413 and "VLSERVE_VIDEO_MAX_BYTES" in error.message


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        (corrupt_video(), 400, "invalid_video"),
        (make_video()[:300], 400, "invalid_video"),  # truncated: the index is missing
        (b"", 400, "invalid_video"),
        (b"\x89PNG\r\n\x1a\n" + bytes(64), 415, "unsupported_video_format"),
    ],
    ids=["corrupt frames", "truncated", "empty", "an image"],
)
def test_undecodable_or_unsupported_input_gets_a_clear_client_error(data, status, code):
    error = refused(data)
    assert (error.status_code, error.code) == (status, code)


def _encode(codec: str, fmt: str, pix_fmt: str) -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, pix_fmt
        for _ in range(4):
            for packet in stream.encode(av.VideoFrame.from_image(Image.new("RGB", (64, 48)))):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


def test_an_unsupported_codec_or_container_is_named():
    error = refused(_encode("mjpeg", "mov", "yuvj420p"))
    assert (error.status_code, error.code) == (415, "unsupported_video_codec") and "'mjpeg'" in error.message
    error = refused(_encode("libx264", "matroska", "yuv420p"))  # .mkv with H.264: not WebM
    assert (error.status_code, error.code) == (415, "unsupported_video_format") and "Matroska" in error.message
