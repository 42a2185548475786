"""capsule-edge as a systemd service: the unit (``capsule-edge.service``) and, to come,
``capsule-edge service install|status|uninstall``."""
