"""Code versions in run keys (thyme_core.base.versioning): each stage's key sees every module it imports, and
only those. Edits are made in a temporary copy of thyme_core, never in the tree under test."""

import shutil

import pytest

from thyme_core.base import versioning
from tests.conftest import REPO

STAGES = {  # the entry modules each stage keys its runs by (as the stages themselves call code_version)
    "prepare": ("thyme_core.prepare.shards",),
    "replay": ("thyme_core.replay.verify",),
    "sft": ("thyme_core.sft.entry",),
    "rl": ("thyme_core.rl.run", "thyme_core.rl.entry"),
}


@pytest.fixture(scope="module")
def copy(tmp_path_factory):
    root = tmp_path_factory.mktemp("code") / "thyme_core"
    shutil.copytree(REPO / "thyme_core", root, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def _versions(root):
    versioning._cached.cache_clear()
    return {stage: versioning.code_version(*entries, root=root) for stage, entries in STAGES.items()}


@pytest.mark.parametrize("edited, changed", [
    # the markup SFT masks are built from, also read by prepare's path rewriting and replay's comparison
    ("thyme_format.py", {"prepare", "replay", "sft", "rl"}),
    # the sandbox runs replay's code blocks and RL's rollouts; SFT and prepare never run code
    # (SFT builds its prompts with the agent's prompt contract, so the agent package's imports are SFT's too)
    ("sandbox/pool.py", {"replay", "rl", "sft"}),
    # image decoding is prepare's (RL rollouts store fed-back images through it too)
    ("images/store.py", {"prepare", "rl", "sft"}),  # SFT builds its prompts with the agent's prompt module
    # SFT's loss masks: RL builds its own sequences and shares only runs/ with SFT
    ("sft/masking.py", {"sft"}),
    # the run framework both trainers use
    ("runs/checkpoint.py", {"sft", "rl"}),
    # how fed-back text is tokenized (special tokens as data): SFT examples and RL rollouts, not replay
    ("base/tokens.py", {"sft", "rl"}),
    # the store is no run's content: both trainers' launchers (sft/launch.py, rl/launch.py) push checkpoints
    # there and restore from it, and neither launcher is in its key (an edit there once changed every RL key)
    ("versions/s3.py", set()),
    ("runs/remote.py", set()),
    ("rl/launch.py", set()),
    # the S3 client setup is how prepare reads s3:// sources (and the store's too, which is no run content)
    ("base/s3.py", {"prepare"}),
    # a package __init__ runs on every import of its modules
    ("agent/__init__.py", {"rl", "sft"}),
])
def test_an_edit_changes_exactly_the_keys_of_the_stages_that_import_it(copy, edited, changed):
    before = _versions(copy)
    path = copy / edited
    original = path.read_text()
    try:
        path.write_text(original + "\n# an edit\n")
        after = _versions(copy)
    finally:
        path.write_text(original)
    assert {s for s in STAGES if before[s] != after[s]} == changed


def test_lazy_and_relative_imports_are_followed(tmp_path):
    pkg = tmp_path / "thyme_core"
    (pkg / "a").mkdir(parents=True)
    for f, text in {"__init__.py": "", "a/__init__.py": "", "a/entry.py": "def f():\n    from thyme_core.a import lazy\n",
                    "a/lazy.py": "from .sibling import x\n", "a/sibling.py": "x = 1\n", "a/unused.py": ""}.items():
        (pkg / f).write_text(text)
    files = {p.relative_to(pkg).as_posix() for p in versioning.import_closure(["thyme_core.a.entry"], pkg)}
    assert files == {"__init__.py", "a/__init__.py", "a/entry.py", "a/lazy.py", "a/sibling.py"}


def test_a_moved_module_is_followed_not_a_missing_file(copy, tmp_path):
    root = tmp_path / "thyme_core"
    shutil.copytree(copy, root)
    (root / "prepare" / "paths.py").rename(root / "prepare" / "path_rules.py")
    shards = root / "prepare" / "shards.py"
    shards.write_text(shards.read_text().replace("thyme_core.prepare.paths", "thyme_core.prepare.path_rules"))
    files = versioning.import_closure(["thyme_core.prepare.shards"], root)
    assert root / "prepare" / "path_rules.py" in files and root / "prepare" / "paths.py" not in files


def test_an_unknown_entry_is_a_clear_error():
    with pytest.raises(ValueError, match="not a thyme_core module: thyme_core.nope"):
        versioning.code_version("thyme_core.nope")


def test_data_files_are_part_of_the_version(tmp_path):
    conf = tmp_path / "ds.json"
    conf.write_text('{"zero_optimization": {"stage": 2}}')
    a = versioning.code_version("thyme_core.sft.entry", data=[conf])
    conf.write_text('{"zero_optimization": {"stage": 3}}')
    versioning._cached.cache_clear()
    assert versioning.code_version("thyme_core.sft.entry", data=[conf]) != a
