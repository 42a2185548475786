"""``capsule-edge bench``: how fast and how good each model, backend and precision is on
this machine, side by side, with the machine's own compute floor beside each row."""
