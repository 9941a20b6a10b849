"""Image decoding: every supported encoding gives the same RGB picture; bad data is refused
with a specific reason."""
import array

import numpy as np
import pytest

from vla_ros.ros import messages
from vla_ros.replay.pattern_bag import decode_pattern, pattern_image
from vla_ros.sensors.image_decode import DecodeError, as_uint8_buffer, check_raw, decode_compressed, decode_raw

H, W = 96, 160
OUT = (48, 80)


def _rgb() -> np.ndarray:
    return pattern_image(2, 0b1010_0000_1111_0001, H, W)


def _tag_rgb(img: np.ndarray) -> np.ndarray:
    """Mean colour of the orange tag in the bottom-left corner."""
    h, w = img.shape[:2]
    return img[h * 7 // 8 :, : w // 16].reshape(-1, 3).mean(axis=0)


@pytest.mark.parametrize("fmt", ["jpeg", "png"])
def test_compressed_decodes_to_target_size_with_pattern_intact(fmt):
    data = messages.encode_jpeg(_rgb()) if fmt == "jpeg" else messages.encode_png(_rgb())
    out = decode_compressed(fmt, data, OUT)
    assert out.shape == (*OUT, 3) and out.dtype == np.uint8
    assert decode_pattern(out) == (2, 0b1010_0000_1111_0001)
    r, _, b = _tag_rgb(out)
    assert r > b + 100  # RGB order, not BGR


def test_format_field_is_checked_against_the_data():
    png = messages.encode_png(_rgb())
    assert decode_pattern(decode_compressed("jpeg", png, OUT)) == (2, 0b1010_0000_1111_0001)  # magic bytes win
    with pytest.raises(DecodeError) as info:
        decode_compressed("jpeg", b"\x00\x01garbage", OUT)
    assert info.value.kind == "corrupt"
    with pytest.raises(DecodeError) as info:
        decode_compressed("rgb8; compressedDepth png", png, OUT)
    assert info.value.kind == "unsupported_format"
    with pytest.raises(DecodeError) as info:
        decode_compressed("jpeg", b"", OUT)
    assert info.value.kind == "empty"


def test_truncated_jpeg_is_corrupt():
    data = messages.encode_jpeg(_rgb())
    with pytest.raises(DecodeError) as info:
        decode_compressed("jpeg", data[: len(data) // 2], OUT)
    assert info.value.kind == "corrupt"


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "8UC3"])
def test_raw_colour_encodings(encoding):
    rgb = _rgb()
    if encoding in ("bgr8", "8UC3"):
        px = rgb[:, :, ::-1]
    elif encoding == "rgba8":
        px = np.dstack([rgb, np.full((H, W), 255, np.uint8)])
    elif encoding == "bgra8":
        px = np.dstack([rgb[:, :, ::-1], np.full((H, W), 7, np.uint8)])
    else:
        px = rgb
    msg = messages.raw_image(1, "cam", px, encoding)
    out = decode_raw(msg.encoding, msg.height, msg.width, msg.step, msg.data, (H, W))
    np.testing.assert_array_equal(out, rgb)


def test_raw_mono_and_padded_rows():
    rgb = _rgb()
    mono = rgb.mean(axis=2).astype(np.uint8)
    padded = np.zeros((H, W + 12), np.uint8)
    padded[:, :W] = mono
    out = decode_raw("mono8", H, W, W + 12, padded.reshape(-1), (H, W))
    np.testing.assert_array_equal(out, np.repeat(mono[:, :, None], 3, axis=2))


@pytest.mark.parametrize(
    "encoding, h, w, step, n, kind",
    [
        ("16UC1", 4, 4, 8, 32, "unsupported_encoding"),
        ("yuv9000", 4, 4, 12, 48, "unsupported_encoding"),
        ("rgb8", 4, 4, 12, 47, "wrong_size"),
        ("rgb8", 4, 4, 10, 40, "wrong_size"),
        ("rgb8", 0, 4, 12, 0, "wrong_size"),
    ],
)
def test_raw_geometry_errors(encoding, h, w, step, n, kind):
    with pytest.raises(DecodeError) as info:
        check_raw(encoding, h, w, step, n)
    assert info.value.kind == kind
    if encoding == "16UC1":
        assert "16UC1" in str(info.value) and "depth" in str(info.value)


def test_data_fields_from_every_transport_are_accepted():
    ref = np.arange(10, dtype=np.uint8)
    for data in (ref.tobytes(), bytearray(ref.tobytes()), memoryview(ref.tobytes()), array.array("B", ref.tobytes()), list(ref), ref):
        np.testing.assert_array_equal(as_uint8_buffer(data), ref)
    with pytest.raises(DecodeError):
        as_uint8_buffer(object())


def test_large_jpeg_reduced_scale_decode_matches_full_decode():
    big = pattern_image(1, 12345, 1080, 1920, texture_seed=3)
    data = messages.encode_jpeg(big)
    fast = decode_compressed("jpeg", data, (320, 576)).astype(np.float64)
    from PIL import Image

    slow = np.asarray(Image.fromarray(big).resize((576, 320), Image.Resampling.BILINEAR), dtype=np.float64)
    assert decode_pattern(fast.astype(np.uint8)) == (1, 12345)
    assert np.abs(fast - slow).mean() < 6.0  # same picture; DCT scaling differs only in detail
