"""Path rewriting (thyme_core.prepare.paths): tables of literal samples, each with why it passes or fails."""

from __future__ import annotations

import time

import pytest

from thyme_core.prepare.paths import PathMapping, rewrite_paths
from thyme_core.base.reasons import Reject

A, B, C = "images/aa/aa11.jpg", "images/bb/bb22.jpg", "images/cc/cc33.png"
OUT = "/mnt/data/temp_processed_images/"
ANSWER = "</think><answer>C</answer>"
Q = 'User Image Path: "/eval/17127.jpg"\nWhat does the sign say?'
Q_DONE = f'User Image Path: "{A}"\nWhat does the sign say?'


def code(body: str) -> str:
    return f"<code>\n```python\n{body}\n```\n</code>\n"


def out(body: str) -> str:
    return f"<sandbox_output>{body}</sandbox_output>\n"


def crop(read: str, write: str = f'os.path.join("{OUT}", f"17127_{{suffix}}.jpg")') -> str:
    """A Thyme-style crop block: reads `read` (code text), writes to `write` (code text), prints it."""
    return code(
        f"import cv2, os\nimage = cv2.imread({read})\nx1, y1, x2, y2 = 1250, 1030, 1360, 1070\n"
        f"suffix = 'ab12cd34'\nprocessed_path = {write}\n"
        "cv2.imwrite(processed_path, image[y1:y2, x1:x2])\nprint(processed_path)"
    )


def maps(result) -> list[tuple]:
    return [(m.where, m.block, m.original, m.image_index, m.rewritten) for m in result.mappings]


# --- the question's path line: (question in, question out); stored = [A], no code ---------------------------
QUESTION_CASES = [
    # plain, double quotes: only the path changes
    ('User Image Path: "/eval/1.jpg"\nQ?', f'User Image Path: "{A}"\nQ?'),
    # bold label
    ('**User Image Path:** "/eval/1.jpg"\nQ?', f'**User Image Path:** "{A}"\nQ?'),
    # heading with a bold close, followed by the size line, which is left alone
    ('### User Image Path:** "/eval/1.jpg"\n### User Image Size:** "640x480"\nQ?',
     f'### User Image Path:** "{A}"\n### User Image Size:** "640x480"\nQ?'),
    # unquoted absolute path stays unquoted (stored paths have no spaces)
    ("User Image Path: /abs/path.png\nQ?", f"User Image Path: {A}\nQ?"),
    # unquoted with a full stop after it: the stop is prose, not path
    ("User Image Path: /abs/path.png.\nQ?", f"User Image Path: {A}.\nQ?"),
    # single quotes kept
    ("User Image Path: '/eval/1.jpg'\nQ?", f"User Image Path: '{A}'\nQ?"),
    # backticks kept
    ("User Image Path: `/eval/1.jpg`\nQ?", f"User Image Path: `{A}`\nQ?"),
    # bold label closed before the colon
    ('**User Image Path**: "/eval/1.jpg"', f'**User Image Path**: "{A}"'),
    # value on the next line
    ('User Image Path:\n"/eval/1.jpg"', f'User Image Path:\n"{A}"'),
    # case differs
    ('user image path: "/eval/1.jpg"', f'user image path: "{A}"'),
    # bold around a bare path: the closing ** is decoration
    ("**User Image Path: /eval/1.jpg**", f"**User Image Path: {A}**"),
    # two path lines: both mean the one input image
    ('User Image Path: "/a/1.jpg"\nUser Image Path: "/b/1.jpg"', f'User Image Path: "{A}"\nUser Image Path: "{A}"'),
    # images but no path line: fine, nothing to rewrite
    ("What does the sign say?", "What does the sign say?"),
]


@pytest.mark.parametrize("question, expected", QUESTION_CASES)
def test_question_path_line(question, expected):
    r = rewrite_paths(question, "<answer>A</answer>", [A])
    assert r.problem is None
    assert r.question == expected
    assert all(m.where == "question" and m.image_index == 0 and m.stored == A for m in r.mappings)
    assert len(r.mappings) == expected.count(A)


# --- responses that map cleanly: (question, response in, stored, response out, mappings) ----------------------
S_IMG = f"{OUT}17127_ab12cd34.jpg"
REWRITE_CASES = {
    # stale image_path: means image[0]; the dynamic output name (f-string) and the output dir literal stay;
    # the printed output path becomes stored[1]
    "stale_image_path": (
        Q,
        "<think>Zoom. " + code('image_path = "/tmp/whatever/photo.jpg"\n' + crop("image_path")[19:-20])
        + out(S_IMG) + ANSWER,
        [A, B],
        "<think>Zoom. " + code(f'image_path = "{A}"\n' + crop("image_path")[19:-20]) + out(B) + ANSWER,
        [("question", 0, "/eval/17127.jpg", 0, True), ("code", 0, "/tmp/whatever/photo.jpg", 0, True),
         ("sandbox_output", 0, S_IMG, 1, True)],
    ),
    # cv2.imread of the question's own path, no image_path variable
    "imread_question_path": (
        Q,
        crop('"/eval/17127.jpg"') + out(S_IMG) + ANSWER,
        [A, B],
        crop(f'"{A}"') + out(B) + ANSWER,
        [("question", 0, "/eval/17127.jpg", 0, True), ("code", 0, "/eval/17127.jpg", 0, True),
         ("sandbox_output", 0, S_IMG, 1, True)],
    ),
    # another folder, same file name as the question's path: still the input
    "same_basename": (
        Q,
        crop('r"/data/images/17127.jpg"') + out(S_IMG) + ANSWER,
        [A, B],
        crop(f'r"{A}"') + out(B) + ANSWER,
        [("question", 0, "/eval/17127.jpg", 0, True), ("code", 0, "/data/images/17127.jpg", 0, True),
         ("sandbox_output", 0, S_IMG, 1, True)],
    ),
    # a bare name equal to the question's file name: the input
    "bare_question_name": (
        Q,
        crop("'17127.jpg'") + out(S_IMG) + ANSWER,
        [A, B],
        crop(f"'{A}'") + out(B) + ANSWER,
        [("question", 0, "/eval/17127.jpg", 0, True), ("code", 0, "17127.jpg", 0, True),
         ("sandbox_output", 0, S_IMG, 1, True)],
    ),
    # a literal output path: it is what the block writes, so it is mapped to image[1] but kept in the text
    "literal_output_written": (
        Q,
        crop("image_path", f'"{OUT}crop_1.jpg"') + out(f"{OUT}crop_1.jpg") + ANSWER,
        [A, B],
        crop("image_path", f'"{OUT}crop_1.jpg"') + out(B) + ANSWER,
        [("question", 0, "/eval/17127.jpg", 0, True), ("code", 0, f"{OUT}crop_1.jpg", 1, False),
         ("sandbox_output", 0, f"{OUT}crop_1.jpg", 1, True)],
    ),
    # comments never run: a stale path in one is left alone (and is no reason to reject)
    "comment_left_alone": (
        Q,
        code('# load "/somewhere/else.jpg" first\nimage_path = "/eval/17127.jpg"  # was \'/x/y.png\'\nprint(1)')
        + out("1") + ANSWER,
        [A],
        code(f'# load "/somewhere/else.jpg" first\nimage_path = "{A}"  # was \'/x/y.png\'\nprint(1)')
        + out("1") + ANSWER,
        [("question", 0, "/eval/17127.jpg", 0, True), ("code", 0, "/eval/17127.jpg", 0, True)],
    ),
    # '#' inside a string is not a comment; the literal after it is still seen
    "hash_in_string": (
        Q,
        code('tag = "#1"; image = cv2.imread("/eval/17127.jpg")\nprint(tag)') + out("#1") + ANSWER,
        [A],
        code(f'tag = "#1"; image = cv2.imread("{A}")\nprint(tag)') + out("#1") + ANSWER,
        [("question", 0, "/eval/17127.jpg", 0, True), ("code", 0, "/eval/17127.jpg", 0, True)],
    ),
    # computation: the code prints a number, the output is text and stays; no processed image
    "computation_text_output": (
        Q,
        code('import math\nimage_path = "/eval/17127.jpg"\nprint(math.hypot(3, 4))') + out("5.0") + ANSWER,
        [A],
        code(f'import math\nimage_path = "{A}"\nprint(math.hypot(3, 4))') + out("5.0") + ANSWER,
        [("question", 0, "/eval/17127.jpg", 0, True), ("code", 0, "/eval/17127.jpg", 0, True)],
    ),
    # text-only sample: no path line, no images, no image literal; nothing to do
    "text_only": (
        "What is 17 * 3?",
        code("print(17 * 3)") + out("51") + ANSWER,
        [],
        code("print(17 * 3)") + out("51") + ANSWER,
        [],
    ),
    # a text-only sample may still name a bare output file and a '.png' suffix: pieces, not paths
    "text_only_bare_pieces": (
        "Plot y = x^2?",
        code('name = "plot.png"; ext = ".png"\nprint(len(name + ext))') + out("12") + ANSWER,
        [],
        code('name = "plot.png"; ext = ".png"\nprint(len(name + ext))') + out("12") + ANSWER,
        [],
    ),
    # the <image> placeholder stays as it is, recorded as image[1]
    "placeholder": (
        Q,
        crop("image_path") + out("<image>") + ANSWER,
        [A, B],
        crop("image_path") + out("<image>") + ANSWER,
        [("question", 0, "/eval/17127.jpg", 0, True), ("sandbox_output", 0, "<image>", 1, False)],
    ),
    # printed with words before the path: only the path is replaced
    "output_with_words": (
        Q,
        crop("image_path") + out(f"Saved to {S_IMG}\n") + ANSWER,
        [A, B],
        crop("image_path") + out(f"Saved to {B}\n") + ANSWER,
        [("question", 0, "/eval/17127.jpg", 0, True), ("sandbox_output", 0, S_IMG, 1, True)],
    ),
    # two rounds: PIL opens the first output by its literal path (-> stored[1]); the second output -> stored[2]
    "two_rounds_pil_reopen": (
        Q,
        "<think>" + crop("image_path") + out(S_IMG) + "Closer. "
        + code(f'from PIL import Image\nimg = Image.open("{S_IMG}")\n'
               f'img.rotate(90).save("{OUT}17127_rot.png")\nprint("{OUT}17127_rot.png")')
        + out(f"{OUT}17127_rot.png") + ANSWER,
        [A, B, C],
        "<think>" + crop("image_path") + out(B) + "Closer. "
        + code(f'from PIL import Image\nimg = Image.open("{B}")\n'
               f'img.rotate(90).save("{OUT}17127_rot.png")\nprint("{OUT}17127_rot.png")')
        + out(C) + ANSWER,
        [("question", 0, "/eval/17127.jpg", 0, True), ("sandbox_output", 0, S_IMG, 1, True),
         ("code", 1, S_IMG, 1, True), ("code", 1, f"{OUT}17127_rot.png", 2, False),
         ("code", 1, f"{OUT}17127_rot.png", 2, False), ("sandbox_output", 1, f"{OUT}17127_rot.png", 2, True)],
    ),
    # two rounds with <image> outputs: the first block's written literal is the only name of image[1],
    # so the second block opening it means image[1]
    "two_rounds_placeholder_reopen": (
        Q,
        crop("image_path", f'"{OUT}a.jpg"') + out("<image>")
        + crop(f'"{OUT}a.jpg"', f'"{OUT}b.jpg"') + out("<image>") + ANSWER,
        [A, B, C],
        crop("image_path", f'"{OUT}a.jpg"') + out("<image>")
        + crop(f'"{B}"', f'"{OUT}b.jpg"') + out("<image>") + ANSWER,
        [("question", 0, "/eval/17127.jpg", 0, True), ("code", 0, f"{OUT}a.jpg", 1, False),
         ("sandbox_output", 0, "<image>", 1, False), ("code", 1, f"{OUT}a.jpg", 1, True),
         ("code", 1, f"{OUT}b.jpg", 2, False), ("sandbox_output", 1, "<image>", 2, False)],
    ),
    # two rounds writing the same output name: in the second block it is that block's write, not a reopen
    "two_rounds_same_output_name": (
        Q,
        crop("image_path", f'"{OUT}crop.jpg"') + out(f"{OUT}crop.jpg")
        + crop('"/eval/17127.jpg"', f'"{OUT}crop.jpg"') + out(f"{OUT}crop.jpg") + ANSWER,
        [A, B, C],
        crop("image_path", f'"{OUT}crop.jpg"') + out(B)
        + crop(f'"{A}"', f'"{OUT}crop.jpg"') + out(C) + ANSWER,
        [("question", 0, "/eval/17127.jpg", 0, True), ("code", 0, f"{OUT}crop.jpg", 1, False),
         ("sandbox_output", 0, f"{OUT}crop.jpg", 1, True), ("code", 1, "/eval/17127.jpg", 0, True),
         ("code", 1, f"{OUT}crop.jpg", 2, False), ("sandbox_output", 1, f"{OUT}crop.jpg", 2, True)],
    ),
    # second round goes back to the input by a stale path and prints it: the literal is image[0] (the
    # question's file name wins), the output shows image[2] (the sandbox's copy of what was printed)
    "two_rounds_back_to_input": (
        Q,
        crop("image_path") + out(S_IMG) + code('image_path = "/old/17127.jpg"\nprint(image_path)')
        + out("/old/17127.jpg") + ANSWER,
        [A, B, C],
        crop("image_path") + out(B) + code(f'image_path = "{A}"\nprint(image_path)') + out(C) + ANSWER,
        [("question", 0, "/eval/17127.jpg", 0, True), ("sandbox_output", 0, S_IMG, 1, True),
         ("code", 1, "/old/17127.jpg", 0, True), ("sandbox_output", 1, "/old/17127.jpg", 2, True)],
    ),
    # written outside the output folder and printed: it means that output, rewritten (only OUTPUT_DIR is kept)
    "written_outside_output_dir": (
        Q,
        crop("image_path", '"/tmp/crop.jpg"') + out("/tmp/crop.jpg") + ANSWER,
        [A, B],
        crop("image_path", f'"{B}"') + out(B) + ANSWER,
        [("question", 0, "/eval/17127.jpg", 0, True), ("code", 0, "/tmp/crop.jpg", 1, True),
         ("sandbox_output", 0, "/tmp/crop.jpg", 1, True)],
    ),
    # a bare output name joined onto the output dir: a piece, left alone; the printed path is rewritten
    "bare_output_piece": (
        Q,
        crop("image_path", f'os.path.join("{OUT}", "crop_2.jpg")') + out(f"{OUT}crop_2.jpg") + ANSWER,
        [A, B],
        crop("image_path", f'os.path.join("{OUT}", "crop_2.jpg")') + out(B) + ANSWER,
        [("question", 0, "/eval/17127.jpg", 0, True), ("sandbox_output", 0, f"{OUT}crop_2.jpg", 1, True)],
    ),
    # the processed image has the same content as the original: one stored path, both indexes resolve
    "duplicate_content": (
        Q,
        crop("image_path") + out(S_IMG) + ANSWER,
        [A, A],
        crop("image_path") + out(A) + ANSWER,
        [("question", 0, "/eval/17127.jpg", 0, True), ("sandbox_output", 0, S_IMG, 1, True)],
    ),
    # an image sample without a path line: the stale image_path still means image[0]
    "no_question_line": (
        "What does the sign say?",
        code('image_path = "/x/y.jpg"\nprint(1)') + out("1") + ANSWER,
        [A],
        code(f'image_path = "{A}"\nprint(1)') + out("1") + ANSWER,
        [("code", 0, "/x/y.jpg", 0, True)],
    ),
    # strings with spaces are prose, not paths, even when they end in .jpg
    "prose_string": (
        Q,
        code('print("saved the crop to /x/y.jpg")') + out("saved the crop to /x/y.jpg") + ANSWER,
        [A, B],
        code('print("saved the crop to /x/y.jpg")') + out(f"saved the crop to {B}") + ANSWER,
        [("question", 0, "/eval/17127.jpg", 0, True), ("sandbox_output", 0, "/x/y.jpg", 1, True)],
    ),
}


@pytest.mark.parametrize("question, response, stored, expected, expected_maps",
                         REWRITE_CASES.values(), ids=REWRITE_CASES.keys())
def test_rewrite(question, response, stored, expected, expected_maps):
    r = rewrite_paths(question, response, stored)
    assert r.problem is None, r.problem
    assert r.response == expected
    assert maps(r) == expected_maps
    assert all(m.stored == stored[m.image_index] for m in r.mappings)


@pytest.mark.parametrize("question, response, stored, _expected, _maps",
                         REWRITE_CASES.values(), ids=REWRITE_CASES.keys())
def test_rewrite_is_idempotent(question, response, stored, _expected, _maps):
    # rewriting a rewritten sample with the same stored list changes nothing and maps the same images
    once = rewrite_paths(question, response, stored)
    twice = rewrite_paths(once.question, once.response, stored)
    assert twice.problem is None
    assert (twice.question, twice.response) == (once.question, once.response)

    def key(m: PathMapping):
        return m.where, m.block, m.image_index, m.stored, m.rewritten

    assert [key(m) for m in twice.mappings] == [key(m) for m in once.mappings]


@pytest.mark.parametrize("question, expected", QUESTION_CASES)
def test_question_rewrite_is_idempotent(question, expected):
    once = rewrite_paths(question, "", [A])
    assert rewrite_paths(once.question, "", [A]).question == once.question == expected


# --- samples that are rejected: (question, response, stored, reason, words the detail must carry) ------------
PROBLEM_CASES = {
    # two outputs show images, one processed image given
    "more_outputs_than_images": (
        Q, crop("image_path") + out(S_IMG) + crop("image_path") + out("<image>") + ANSWER, [A, B],
        Reject.IMAGE_COUNT_MISMATCH, ["2 sandbox output(s)", "1 processed image(s)"],
    ),
    # one output shows an image, two processed images given
    "fewer_outputs_than_images": (
        Q, crop("image_path") + out(S_IMG) + ANSWER, [A, B, C],
        Reject.IMAGE_COUNT_MISMATCH, ["1 sandbox output(s)", "2 processed image(s)"],
    ),
    # a processed image given but the only output is text
    "text_output_but_image_given": (
        Q, code("print(2)") + out("2") + ANSWER, [A, B],
        Reject.IMAGE_COUNT_MISMATCH, ["0 sandbox output(s)", "1 processed image(s)"],
    ),
    # a text-only sample whose output shows an image
    "no_image_sample_shows_image": (
        "What is 2+2?", crop('"/x/y.jpg"') + out(S_IMG) + ANSWER, [],
        Reject.IMAGE_COUNT_MISMATCH, ["1 sandbox output(s)", "0 processed image(s)"],
    ),
    # a literal path that is not the input, not an output, not a stored image
    "unmapped_literal": (
        Q, code('other = cv2.imread("/data/other_photo.jpg")\nprint(other.shape)') + out("(8, 8, 3)") + ANSWER,
        [A], Reject.UNMAPPED_PATH, ["code block 0", "/data/other_photo.jpg"],
    ),
    # the same in the second block: the detail names that block
    "unmapped_in_second_block": (
        Q, crop("image_path") + out(S_IMG) + code('Image.open("/elsewhere/ref.png")\nprint(1)') + out("1") + ANSWER,
        [A, B], Reject.UNMAPPED_PATH, ["code block 1", "/elsewhere/ref.png"],
    ),
    # reopening an output nobody showed or wrote (a different name than the first output printed)
    "reopen_unknown_output_elsewhere": (
        Q, crop("image_path") + out(S_IMG) + code('Image.open("/mnt/data/other/17127_zz.jpg")\nprint(1)')
        + out("1") + ANSWER,
        [A, B], Reject.UNMAPPED_PATH, ["/mnt/data/other/17127_zz.jpg"],
    ),
    # reading a file in the outputs folder that no block wrote: a read call names an existing file
    "read_unwritten_output": (
        Q, crop("image_path") + out(S_IMG)
        + code('ref = Image.open("/mnt/data/temp_processed_images/never_saved.png")\nprint(ref.size)')
        + out("(64, 64)") + ANSWER,
        [A, B], Reject.UNMAPPED_PATH, ["code block 1", "never_saved.png"],
    ),
    # a path line in a sample that has no image
    "path_line_without_image": (
        'User Image Path: "/eval/1.jpg"\nWhat is 2+2?', code("print(4)") + out("4") + ANSWER, [],
        Reject.UNMAPPED_PATH, ["question path line 0", "/eval/1.jpg", "no image"],
    ),
    # a text-only sample whose code names an image file: it means nothing the sample has
    "no_image_sample_with_path": (
        "What is 2+2?", code('image_path = "/eval/1.jpg"\nprint(4)') + out("4") + ANSWER, [],
        Reject.UNMAPPED_PATH, ["code block 0", "/eval/1.jpg"],
    ),
}


@pytest.mark.parametrize("question, response, stored, reason, words",
                         PROBLEM_CASES.values(), ids=PROBLEM_CASES.keys())
def test_problem(question, response, stored, reason, words):
    r = rewrite_paths(question, response, stored)
    assert r.problem is not None and r.problem.reason == reason
    assert all(w in r.problem.detail for w in words), r.problem.detail
    # a rejected sample is not half-repaired: original text back, no mappings
    assert (r.question, r.response, r.mappings, r.ok) == (question, response, (), False)


@pytest.mark.parametrize("bad", ["", "images/a b.jpg", 'images/"x".jpg', "images/{x}.jpg"])
def test_bad_stored_path_is_a_caller_error(bad):
    # stored paths come from the image store; one that cannot sit in a Python string literal is a bug
    with pytest.raises(ValueError):
        rewrite_paths(Q, "", [bad])


def _typical_sample() -> tuple[str, str, list[str]]:
    think = "Let me look closely at the region with the small text near the bottom right corner. " * 9
    response = (
        "<think>" + think + crop("image_path") + out(S_IMG) + think
        + code(f'from PIL import Image, ImageEnhance\nimg = Image.open("{S_IMG}")\n'
               'img = ImageEnhance.Contrast(img).enhance(2.0)\n'
               f'img.save("{OUT}17127_contrast.jpg")\nprint("{OUT}17127_contrast.jpg")')
        + out(f"{OUT}17127_contrast.jpg") + think + ANSWER
    )
    return '### User Image Path:** "/eval/17127.jpg"\n### User Image Size:** "1920x1080"\nQ?', response, [A, B, C]


def test_typical_sample_is_fast():
    # it runs for every sample of millions; the target is well under 1 ms for a ~3 KB response
    question, response, stored = _typical_sample()
    assert 2500 < len(response) < 4000
    rewrite_paths(question, response, stored)
    n = 300
    t = time.perf_counter()
    for _ in range(n):
        r = rewrite_paths(question, response, stored)
    per_sample = (time.perf_counter() - t) / n
    assert r.problem is None and len(r.mappings) == 6
    assert per_sample < 1e-3, f"{per_sample * 1e6:.0f} us per sample"
