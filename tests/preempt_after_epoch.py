"""``python tests/preempt_after_epoch.py N ARGS...`` runs ``absgd ARGS...`` but ends every
process abruptly (``os._exit``: no cleanup, like a pre-empted node) right after the checkpoint
at the end of epoch ``N`` is on disk. tests/test_distributed_train.py runs it under torchrun."""

from __future__ import annotations

import os
import sys

PREEMPTED_EXIT_CODE = 75


def main() -> None:
    import torch.distributed as dist

    import absgd.training.run as run_module
    from absgd.cli import main as absgd_main

    epochs_done = int(sys.argv[1])
    end_epoch = run_module.TrainingRun._end_epoch

    def end_epoch_then_die(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        end_epoch(self, *args, **kwargs)  # records the epoch and writes its checkpoint
        if self.epoch == epochs_done:
            if dist.is_initialized():
                dist.barrier()  # rank 0 has written the checkpoint
            sys.stdout.flush()
            os._exit(PREEMPTED_EXIT_CODE)

    run_module.TrainingRun._end_epoch = end_epoch_then_die  # type: ignore[method-assign]
    sys.exit(absgd_main(sys.argv[2:]))


if __name__ == "__main__":
    main()
