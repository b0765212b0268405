"""Reports for operators: the scheme summary and the leaderboard."""
