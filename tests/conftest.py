"""Test-suite settings."""

import torch

# The networks in the tests are tiny: one thread avoids thread start-up and contention costs that
# dominate them on small CPUs (measured 10x faster on the 2-core CI machines under load).
torch.set_num_threads(1)
