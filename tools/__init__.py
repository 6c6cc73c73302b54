"""Tools above the bot: whole-system benchmarks and checks a developer runs by hand (`python -m tools.NAME`). Nothing
in the bot, its service or the recognition core imports them."""
