"""Settings shared by every test folder."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# Property tests: a quick profile by default, a deeper one on request
# (HYPOTHESIS_PROFILE=deep). No deadline: CI machines stall at random.
settings.register_profile(
    "default", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "deep", max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
