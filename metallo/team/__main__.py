"""``python -m metallo.team up|down|status`` (the Makefile's team-up, team-down and team-status)."""

from metallo.team.cli import main

if __name__ == "__main__":
    main()
