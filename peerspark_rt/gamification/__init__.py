"""Gamification: points, levels, streaks, achievements, challenges, leaderboards, leagues and
follows, all driven by the analytics event log (README, "Gamification")."""
