"""GPU tier (opt-in): one GRPO-ATS step on CUDA with the tiny Qwen2.5-VL (fp32) and the real sandbox, with the
same checks as the CPU unit test (tests/unit/test_rl_step.py): rewards, ratio 1 and KL 0 on the first inner
step, the training forward reproduces generation's log-probs (fed-back image included; a looser tolerance:
cuDNN and SDPA kernels differ between the cached generate and the full forward), masked tokens get zero
gradient, the policy moves and the reference does not. Never run so far: no GPU was lent."""

import pytest
import torch

from tests.unit.test_rl_step import check_one_step

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def test_one_grpo_step_on_cuda(tmp_path):
    from thyme_core.base.home import DataHome

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    check_one_step(DataHome(tmp_path / "home").ensure(), "cuda", atol=2e-3)
