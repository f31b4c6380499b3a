"""Thyme compatibility of the sandbox: the released model's coding habits, run for real on generated images."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from thyme_core.sandbox import SandboxPool, Status, prepare_code

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed (make setup)")
REPO = Path(__file__).resolve().parents[2]
OUT = "/mnt/data/temp_processed_images"


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("img") / "scene.jpg"
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 255, (600, 1000, 3), dtype=np.uint8)).save(path, quality=90)
    return path


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(workers=2) as p:
        yield p


def saved_size(result) -> tuple[int, int]:
    assert result.status == Status.OK, result
    assert len(result.images) == 1, result
    return result.images[0].width, result.images[0].height


def test_image_path_is_rebound_even_when_code_assigns_a_literal(pool, image):
    code = '```python\nfrom PIL import Image\nimage_path = "/mnt/data/made_up_name.png"\nprint(Image.open(image_path).size)\n```'
    r = pool.run(code, [image], session_id="rebind")
    assert r.status == Status.OK and r.stdout == "(1000, 600)\n", r


def test_outputs_land_in_session_folder_with_or_without_trailing_slash(pool, image):
    code = f"""
import os, cv2
img = cv2.imread(image_path)
a = os.path.join("{OUT}", "a.jpg")
b = "{OUT}/" + "b.png"
cv2.imwrite(a, img[0:100, 0:200])
cv2.imwrite(b, img[100:300, 0:200])
print(a)
print(b)
"""
    r = pool.run(code, [image], session_id="outdir")
    assert r.status == Status.OK, r
    assert [(im.width, im.height) for im in r.images] == [(200, 100), (200, 200)]
    for line, im in zip(r.stdout.split(), r.images):
        assert r.printed_image(line) == im and im.path == line  # the path the code printed, and its bytes
        assert Image.open(io.BytesIO(im.data)).size == (im.width, im.height)


@pytest.mark.parametrize(
    "assignment, expected",
    [
        ("x1, y1, x2, y2 = 100, 50, 400, 250", (300, 200)),  # inside the image: unchanged
        ("left, top, right, bottom = -40, -10, 300, 200", (300, 200)),  # negative literals clamp to 0
        ("x1, y1, x2, y2 = 900, 500, 1300, 900", (100, 100)),  # overflow clamps to the image edge
        ("x1, y1, x2, y2 = 10, 10, 20, 30", (64, 64)),  # sides under 64 px grow to 64 from x1 / y1
        ("x1, y1, x2, y2 = 990, 590, 995, 599", (64, 64)),  # ... shifted back inside at the far edge
    ],
)
def test_literal_crop_boxes_are_clamped_like_thyme(pool, image, assignment, expected):
    code = f"""
from PIL import Image
img = Image.open(image_path)
{assignment}
img.crop(({assignment.split("=")[0].strip()})).save("{OUT}/c.png")
print("{OUT}/c.png")
"""
    r = pool.run(code, [image], session_id=f"clamp-{expected}-{assignment[:8]}")
    assert saved_size(r) == expected


@pytest.mark.parametrize("name", ["box", "bbox", "crop_box", "coords"])
def test_named_box_literals_are_clamped(pool, image, name):
    code = f"from PIL import Image\n{name} = [-20, 550, 30, 700]\nImage.open(image_path).crop({name}).save('{OUT}/b.png')\nprint(1)"
    assert saved_size(pool.run(code, [image], session_id=f"named-{name}")) == (64, 64)  # y 550..600 grows to 64, shifted up


def test_cv_aliases_and_libraries_are_importable(pool):
    code = """
import cv, cv3, cv4, cv2, math, numpy as np
from PIL import Image, ImageEnhance, ImageOps, ImageFilter, ImageDraw
print(cv is cv2 and cv3 is cv2 and cv4 is cv2, math.sqrt(16))
"""
    assert pool.run(code, session_id="aliases").stdout == "True 4.0\n"


def test_one_namespace_for_functions_and_comprehensions(pool):
    code = """
    factor = 3
    def scale(v):
        return v * factor
    print([scale(v) + factor for v in range(3)], sum(factor for _ in range(2)))
"""  # indented as a whole, as code cut from a markdown list sometimes is
    assert pool.run(code, session_id="ns").stdout == "[3, 6, 9] 6\n"


def test_first_line_opens_a_block(pool):
    code = "for i in range(2):\n    print(i)\nelse:\n    print('done')"
    assert pool.run(code, session_id="block").stdout == "0\n1\ndone\n"


def test_later_blocks_see_earlier_variables_and_sessions_are_separate(pool, image):
    pool.run("import cv2\nimg = cv2.imread(image_path)\nh, w = img.shape[:2]", [image], session_id="t1")
    r = pool.run("print(w, h)", [image], session_id="t1")
    assert r.stdout == "1000 600\n" and not r.fresh_interpreter
    other = pool.run("print(w)", [image], session_id="t2")
    assert other.status == Status.ERROR and other.error == "NameError: name 'w' is not defined"


def test_error_is_reported_as_the_model_should_see_it(pool):
    r = pool.run("x = 1\ny = x / 0", session_id="err")
    assert r.status == Status.ERROR and r.error == "ZeroDivisionError: division by zero"
    assert 'File "<code>", line 2' in r.stderr


def test_images_qwen_cannot_take_are_bad_output(pool, image):
    tiny = f"from PIL import Image\nImage.open(image_path).resize((20, 20)).save('{OUT}/t.png')\nprint('{OUT}/t.png')"
    thin = f"from PIL import Image\nImage.new('RGB', (8400, 30)).save('{OUT}/w.png')\nprint('{OUT}/w.png')"
    for code in (tiny, thin):
        r = pool.run(code, [image], session_id="bad")
        assert r.status == Status.BAD_OUTPUT and "bad output image" in r.error, r


def test_code_that_prints_and_saves_nothing_is_no_output(pool):
    assert pool.run("x = 41 + 1", session_id="quiet").status == Status.NO_OUTPUT


def test_computation_code_prints_a_value(pool):
    r = pool.run("import math\nprint(round(math.pi * 2, 4))", session_id="calc")
    assert r.status == Status.OK and r.stdout == "6.2832\n" and r.images == ()


def test_prepare_code_keeps_comments_and_line_numbers():
    code = '# load\nimage_path = "/x/y.jpg"  # stale\nbox = (-1, -2, 3, 4)\n'
    assert prepare_code(code, "/in/a.jpg", (100, 100)) == '# load\nimage_path = "/in/a.jpg"  # stale\nbox = (0, 0, 64, 64)'


def test_prepare_code_leaves_computed_boxes_and_syntax_errors_alone():
    assert prepare_code("box = (a, 0, 10, 10)", "/i.jpg", (50, 50)) == "box = (a, 0, 10, 10)"
    assert prepare_code("def f(:\n  pass", "/i.jpg", (50, 50)) == "def f(:\n  pass"


def test_cli_prints_one_json_object_and_keeps_images(tmp_path, image):
    code = tmp_path / "crop.py"
    code.write_text(f"import cv2\nimg = cv2.imread(image_path)\ncv2.imwrite('{OUT}/z.jpg', cv2.resize(img[0:200, 0:300], None, fx=2, fy=2))\nprint('{OUT}/z.jpg')\n")
    cmd = [sys.executable, "-m", "thyme_cli.main", "sandbox", "run", "--image", str(image), "--code", str(code),
           "--home", str(tmp_path / "home")]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(result) >= {"status", "stdout", "stderr", "images", "error", "duration_s"}
    assert result["status"] == "ok" and result["image_sizes"] == [[600, 400]]
    assert os.path.isfile(result["images"][0]) and result["images"][0].startswith(str(tmp_path / "home"))
