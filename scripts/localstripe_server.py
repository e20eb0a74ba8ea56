"""localstripe (PyPI) bound to 127.0.0.1 only, from scratch, keeping nothing on disk.

By default localstripe listens on every interface and pickles its store to /tmp/localstripe.pickle on every
change; tests want neither. Usage: python scripts/localstripe_server.py PORT
"""
import sys

from aiohttp import web
from localstripe.resources import store
from localstripe.server import app

# A fresh store each start, never written to disk.
store.clear()
store.dump_to_disk = lambda: None

web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
