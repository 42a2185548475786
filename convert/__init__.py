"""Host side of capsule-edge: training and int8 conversion. Needs the `convert` profile."""
