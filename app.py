"""Streaming assistant chat: `python app.py` serves it at http://127.0.0.1:7860.

With OPENAI_API_KEY set it talks to the live API; without one it replays the bundled
recordings. `python app.py --help` lists every flag and environment variable. The same
program is installed as the `streamchat` command (streamchat/main.py).
"""

from __future__ import annotations

import sys

from streamchat.main import main, module_app

if __name__ == "__main__":
    sys.exit(main())

# Imported (tests, hosts that look for `demo`): the app as the environment configures it.
runtime, demo = module_app()
