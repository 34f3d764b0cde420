"""End-to-end experiments built from the library's parts: transfer learning from the zoo (the demo)."""

from lit_deep.experiments.transfer import TransferConfig, TransferRun, run_transfer

__all__ = ["TransferConfig", "TransferRun", "build_models", "run_transfer"]
