"""A small generated benchmark in VLMEvalKit TSV form, with scripted responses whose score is known: the demo's
and the tests' evaluation input."""

from __future__ import annotations

from pathlib import Path

from thyme_core.eval.benchmarks import BenchRow, write_tsv

_COLORS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 70, 220), "yellow": (230, 210, 40)}


def write_demo_benchmark(folder: str | Path, n: int = 8, size: tuple[int, int] = (320, 240)) -> tuple[Path, Path]:
    """A small generated benchmark (a coloured square on grey: "what colour is it?") plus scripted responses.

    Returns (bench.tsv, responses.jsonl). Response i crops the square with code and answers; every third
    answers a wrong letter and every fourth runs code that fails first, so the expected score is known:
    correct = rows whose index is not divisible by 3.
    """
    import base64
    import io
    import json

    from PIL import Image, ImageDraw

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    letters = dict(zip("ABCD", _COLORS))
    rows, responses = [], []
    for i in range(n):
        truth = "ABCD"[i % 4]
        im = Image.new("RGB", size, (128, 128, 128))
        x, y = 20 + (i * 37) % (size[0] - 80), 20 + (i * 23) % (size[1] - 80)
        ImageDraw.Draw(im).rectangle((x, y, x + 40, y + 40), fill=_COLORS[letters[truth]])
        buf = io.BytesIO()
        im.save(buf, "PNG")
        rows.append(BenchRow(str(i), "What colour is the square?", letters, truth,
                             "color" if i % 2 == 0 else "color-hard", "", base64.b64encode(buf.getvalue()).decode()))
        said = truth if i % 3 else "ABCD"[(i + 1) % 4]
        fail = "print(undefined_name)\n" if i % 4 == 0 else ""
        code = (f"```python\nfrom PIL import Image\n{fail}img = Image.open(image_path)\n"
                f"crop = img.crop(({x - 10}, {y - 10}, {x + 50}, {y + 50}))\n"
                f"out = '/mnt/data/temp_processed_images/square_{i}.png'\ncrop.save(out)\nprint(out)\n```")
        fixed = code.replace(fail, "")
        steps = f"<code>\n{code}\n</code>\n<sandbox_output>x</sandbox_output>\n" + (
            f"That failed; again.\n<code>\n{fixed}\n</code>\n<sandbox_output>x</sandbox_output>\n" if fail else "")
        text = f"<think>Zoom in on the square.\n{steps}The square is clear now.</think>\n<answer>**{said}**</answer>"
        responses.append(json.dumps({"index": str(i), "response": text}))
    write_tsv(folder / "demo_bench.tsv", rows)
    (folder / "demo_responses.jsonl").write_text("\n".join(responses) + "\n")
    return folder / "demo_bench.tsv", folder / "demo_responses.jsonl"
