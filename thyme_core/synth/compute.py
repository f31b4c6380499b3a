"""Computation problems (Thyme's annealing data): code that computes a value and prints it.

Each problem is a question plus one or two code rounds; in two-round form the second round uses variables
the first defined (Thyme runs a trajectory's blocks in one namespace). Numbers come from the caller's
seeded Generator. The printed value is not precomputed here: the code is executed and its output becomes
both the <sandbox_output> and the answer, so they cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from thyme_core.synth.codegen import pick


@dataclass(frozen=True)
class Problem:
    question: str
    rounds: tuple[tuple[str, str], ...]  # (reasoning before the code, code)
    unit: str = ""  # appended to the answer ("dollars", "cm^2", ...)


def lines(*parts: str) -> str:
    return "\n".join(parts)


def _money(rng, lo: int, hi: int) -> float:
    return float(rng.integers(lo * 4, hi * 4)) / 4


def shopping(rng: np.random.Generator, rounds: int) -> Problem:
    item = pick(rng, ("notebooks", "pens", "mugs", "tickets", "lamps", "plates"))
    price, qty, tax = _money(rng, 1, 40), int(rng.integers(2, 30)), int(rng.integers(3, 15))
    q = (f"A shop sells {item} at ${price:.2f} each. With a sales tax of {tax}%, how much do {qty} {item} "
         "cost in total? Round to two decimal places.")
    if rounds == 1:
        code = lines(f"price = {price}", f"quantity = {qty}", f"tax_rate = {tax} / 100",
                     "total = price * quantity * (1 + tax_rate)", "print(round(total, 2))")
        return Problem(q, (("I will compute the total including tax.\n", code),), "dollars")
    c1 = f"price = {price}\nquantity = {qty}\nsubtotal = price * quantity\nprint(subtotal)"
    c2 = f"tax = subtotal * {tax} / 100\ntotal = subtotal + tax\nprint(round(total, 2))"
    steps = (("First the subtotal before tax.\n", c1), ("\nNow add the tax to the subtotal.\n", c2))
    return Problem(q, steps, "dollars")


def circle(rng: np.random.Generator, rounds: int) -> Problem:
    r, side = int(rng.integers(2, 40)), int(rng.integers(5, 80))
    q = f"A circle has radius {r} cm. What is its area in square centimetres, rounded to two decimals?"
    if rounds == 1:
        code = f"import math\n\nradius = {r}\narea = math.pi * radius ** 2\nprint(round(area, 2))"
        return Problem(q, (("The area of a circle is pi * r^2.\n", code),), "cm^2")
    q = (f"A circle of radius {r} cm is drawn inside a square of side {side} cm. What fraction of the square's "
         "area does the circle cover? Round to four decimals.")
    c1 = f"import math\n\nradius = {r}\ncircle_area = math.pi * radius ** 2\nprint(circle_area)"
    c2 = f"square_area = {side} ** 2\nratio = circle_area / square_area\nprint(round(ratio, 4))"
    return Problem(q, (("First the circle's area.\n", c1), ("\nThen divide by the square's area.\n", c2)))


def triangle(rng: np.random.Generator, rounds: int) -> Problem:
    a, b = int(rng.integers(3, 50)), int(rng.integers(3, 50))
    if rounds == 1:
        q = f"A right triangle has legs of {a} and {b} units. How long is the hypotenuse (two decimals)?"
        code = f"import math\n\na, b = {a}, {b}\nc = math.hypot(a, b)\nprint(round(c, 2))"
        return Problem(q, (("By Pythagoras, c = sqrt(a^2 + b^2).\n", code),), "units")
    q = f"A right triangle has legs of {a} and {b} units. What is its perimeter (two decimals)?"
    c1 = f"import math\n\na, b = {a}, {b}\nc = math.sqrt(a ** 2 + b ** 2)\nprint(c)"
    c2 = "perimeter = a + b + c\nprint(round(perimeter, 2))"
    return Problem(q, (("The hypotenuse first.\n", c1), ("\nNow sum the three sides.\n", c2)), "units")


def statistics(rng: np.random.Generator, rounds: int) -> Problem:
    values = [int(v) for v in rng.integers(1, 100, size=int(rng.integers(5, 10)))]
    if rounds == 1:
        what = pick(rng, ("mean", "median", "standard deviation"))
        fn = {"mean": "np.mean", "median": "np.median", "standard deviation": "np.std"}[what]
        q = f"What is the {what} of the values {values}? Round to two decimals."
        code = f"import numpy as np\n\nvalues = {values}\nresult = {fn}(values)\nprint(round(float(result), 2))"
        return Problem(q, ((f"I will compute the {what} with numpy.\n", code),))
    q = f"How many of the values {values} are strictly greater than their mean?"
    c1 = f"import statistics\n\nvalues = {values}\nmean = statistics.mean(values)\nprint(mean)"
    c2 = "count = sum(1 for v in values if v > mean)\nprint(count)"
    return Problem(q, (("First the mean.\n", c1), ("\nNow count the values above it.\n", c2)))


def linear_system(rng: np.random.Generator, rounds: int) -> Problem:
    while True:
        a, b, c, d = (int(v) for v in rng.integers(-9, 10, size=4))
        if a * d - b * c != 0:
            break
    x, y = int(rng.integers(-10, 11)), int(rng.integers(-10, 11))
    e, f = a * x + b * y, c * x + d * y
    q = f"Solve the system {a}x + {b}y = {e} and {c}x + {d}y = {f}. What is x + y?"
    setup = lines("import numpy as np", "", f"A = np.array([[{a}, {b}], [{c}, {d}]], dtype=float)",
                  f"rhs = np.array([{e}, {f}], dtype=float)")
    if rounds == 1:
        code = lines(setup, "x, y = np.linalg.solve(A, rhs)", "print(round(x + y, 4))")
        return Problem(q, (("I will solve the 2x2 system with numpy.\n", code),))
    c1 = lines(setup, "solution = np.linalg.solve(A, rhs)", "print(solution)")
    c2 = "print(round(float(solution.sum()), 4))"
    return Problem(q, (("Solve the system first.\n", c1), ("\nNow add the two components.\n", c2)))


def interest(rng: np.random.Generator, rounds: int) -> Problem:
    p, r, n = int(rng.integers(10, 500)) * 10, int(rng.integers(1, 12)), int(rng.integers(2, 20))
    q = f"${p} is invested at {r}% annual interest compounded yearly. What is it worth after {n} years?"
    if rounds == 1:
        code = lines(f"principal = {p}", f"rate = {r} / 100", f"years = {n}",
                     "amount = principal * (1 + rate) ** years", "print(round(amount, 2))")
        return Problem(q, (("Compound growth: P * (1 + r)^n.\n", code),), "dollars")
    c1 = f"rate = {r} / 100\ngrowth = (1 + rate) ** {n}\nprint(growth)"
    c2 = f"amount = {p} * growth\nprint(round(amount, 2))"
    return Problem(q, (("The growth factor first.\n", c1), ("\nMultiply by the principal.\n", c2)), "dollars")


TEXT_PROBLEMS = (shopping, circle, triangle, statistics, linear_system, interest)


def text_problem(rng: np.random.Generator, rounds: int) -> Problem:
    return pick(rng, TEXT_PROBLEMS)(rng, rounds)


def price_problem(rng: np.random.Generator, prices) -> tuple[str, str, str]:
    """(question about the scene's price list, reasoning, code) for a total of two items."""
    (n1, p1), (n2, p2) = [prices[int(i)] for i in rng.permutation(len(prices))[:2]]
    q1, q2 = int(rng.integers(2, 9)), int(rng.integers(2, 9))
    question = (f"According to the price list in the image, how much do {q1} {n1} and {q2} {n2} cost "
                "together?")
    reasoning = f"The price list shows {n1} at {p1:.2f} and {n2} at {p2:.2f}. I will compute the total.\n"
    code = lines(f"{n1}_price = {p1}", f"{n2}_price = {p2}", f"total = {q1} * {n1}_price + {q2} * {n2}_price",
                 "print(round(total, 2))")
    return question, reasoning, code


def sign_sum_problem(values: list[int], colours: list[str]) -> tuple[str, str, str]:
    question = (f"What is the sum of the numbers on the {colours[0]} sign and the {colours[1]} sign, "
                "multiplied by 3?")
    reasoning = f"The {colours[0]} sign shows {values[0]} and the {colours[1]} sign shows {values[1]}.\n"
    code = f"a = {values[0]}\nb = {values[1]}\nresult = (a + b) * 3\nprint(result)"
    return question, reasoning, code


def distractors(rng: np.random.Generator, value: str) -> list[str]:
    """Plausible wrong options for a printed number, formatted like it."""
    try:
        v = float(value)
    except ValueError:
        return [value + "0", "0", "1"]
    decimals = len(value.split(".")[1]) if "." in value else 0
    out = []
    for factor in (0.9, 1.1, 1.25, 0.75, 2.0):
        w = round(v * factor + (1 if decimals == 0 else 0), decimals)
        out.append(f"{w:.{decimals}f}" if decimals else str(int(w)))
    return [o for o in dict.fromkeys(out) if o != value][:3]
