"""Installing capsule-edge where there is no network: the offline bundle, and its proof on
an emulated arm64 root (host-side tools; never installed on the device)."""
