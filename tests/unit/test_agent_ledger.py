"""Token accounting: image fitting to the budget, compact/expanded forms, masks and counts."""

import pytest

from thyme_core.agent.codec import ByteCodec
from thyme_core.agent.ledger import TokenLedger, fit_image, image_tokens

MIN, MAX = 56 * 56, 28 * 28 * 1280


@pytest.mark.parametrize("size, max_tokens, expected", [
    ((1000, 800), None, (1008, 812)),  # rounded to multiples of 28, within max_pixels
    ((1000, 800), 100, (308, 224)),  # budget of 100 tokens: 11x8 = 88 tokens, aspect kept
    ((1000, 800), 4, (56, 56)),  # the smallest image min_pixels allows: 2x2 tokens
    ((1000, 800), 3, None),  # cannot fit even min_pixels: the caller ends the trajectory
    ((20, 20), None, (56, 56)),  # tiny image scaled up to min_pixels
    ((4000, 3000), None, (1148, 840)),  # large image scaled down under max_pixels (1280 tokens), as Qwen's smart_resize
    ((56, 5600), 40, (28, 1120)),  # extreme aspect: the short side stays 28, the long one takes the cut
])
def test_fit_image(size, max_tokens, expected):
    got = fit_image(*size, MIN, MAX, max_tokens)
    assert got == expected
    if got:
        assert got[0] % 28 == 0 and got[1] % 28 == 0
        assert max_tokens is None or image_tokens(*got) <= max_tokens


def test_ledger_expands_each_pad_to_its_image_tokens_and_carries_the_mask():
    c = ByteCodec()
    led = TokenLedger(c.image_pad_id)
    led.add_text([10, 11], generated=False)
    led.add_image([c.token_id("<|vision_start|>")], [c.token_id("<|vision_end|>")], 56, 84, "prompt")
    led.add_text([12, 13, 14], generated=True)
    led.add_image([3], [4], 28, 28, "sandbox")
    led.add_text([15], generated=True)
    assert led.ids == [10, 11, 3, 5, 4, 12, 13, 14, 3, 5, 4, 15]
    assert led.mask == [0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 1]
    exp = led.expanded()
    assert exp.image_spans == [(3, 9), (14, 15)]  # 56x84 = 2x3 = 6 tokens; 28x28 = 1 token
    assert exp.ids[3:9] == [5] * 6 and len(exp.ids) == len(led) == 12 + 5
    assert exp.mask == [0, 0, 0] + [0] * 6 + [0, 1, 1, 1, 0] + [0] + [0, 1]
    assert [s.grid_thw for s in led.images] == [(1, 6, 4), (1, 2, 2)]
    assert led.counts() == {"prompt": 10, "generated": 4, "sandbox": 3, "image": 7, "total": 17}


def test_ledger_refuses_unfitted_images_and_stray_pads():
    led = TokenLedger(5)
    with pytest.raises(ValueError):
        led.add_image([], [], 30, 28, "sandbox")  # not a multiple of 28: token count would be ambiguous
    with pytest.raises(ValueError):
        led.add_text([1, 5], generated=True)  # a pad without an image


def test_byte_codec_round_trips_text_with_special_tokens():
    c = ByteCodec()
    text = "<|im_start|>assistant\n<think>größe</think><|im_end|>"
    assert c.decode(c.encode(text)) == text
    assert c.encode("<|image_pad|>") == [c.image_pad_id]
