"""Services behind the Discord bot: no discord.py types in their interfaces, so they can be tested alone.

- `config`: the bot-only options read from the environment (the rest lives in `inference.settings`).
- `recognizer`: the bounded inference executor (raises `Busy` when its queue is full).
- `storage`: guild settings in SQLite and per-guild galleries under `DATA_DIR`.
- `fetch`: a safe https picture fetcher.
- `cooldown`: per-user and per-guild rate limits.
- `render`: embeds and buttons for a recognition reply (this one does use discord.py types).
"""
