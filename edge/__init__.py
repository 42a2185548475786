"""capsule-edge on-device runtime.

Imports nothing from ``convert/``, tensorflow or torch: this package is what runs on a
Raspberry Pi or Jetson with only the ``edge`` install profile.
"""

__version__ = "0.1.0"
