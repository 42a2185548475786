"""The reading aid: a study's timeline, its findings as events, and its report."""
